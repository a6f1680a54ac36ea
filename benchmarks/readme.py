"""The figures section of benchmarks/README.md, written by `python -m benchmarks` between two
markers so that the prose around it stays as written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.__main__ import Outcome

BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"


def replace_figures(readme: str, figures: str) -> str:
    """The README with the text between the markers replaced (appended when it has none)."""
    block = f"{BEGIN}\n{figures.rstrip()}\n{END}"
    if BEGIN in readme and END in readme:
        head, rest = readme.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return readme.rstrip() + "\n\n" + block + "\n"


def render_figures(machine: dict[str, str], outcomes: list[Outcome], total_s: float) -> str:
    lines = [
        f"Measured {machine['date']} by `python -m benchmarks` in {total_s / 60:.1f} minutes, "
        f"on {machine['cpu']}; Python {machine['python']}, torch {machine['torch']}, "
        f"Ray {machine['ray']}, MLflow {machine['mlflow']}, SQLAlchemy {machine['sqlalchemy']}, "
        f"NumPy {machine['numpy']}. Load average (1 min) before and after each benchmark as "
        "shown: the machine is shared, and other load only ever adds time.",
        "",
    ]
    for outcome in outcomes:
        lines += [
            f"#### `{outcome.name}` ({outcome.wall_s:.0f} s, load average "
            f"{outcome.load_before} -> {outcome.load_after})",
            "",
            *(
                render_records(outcome.records)
                if outcome.records
                else ["    " + ln for ln in outcome.text.splitlines()]
            ),
            "",
        ]
    return "\n".join(lines)


def render_records(records: list[dict[str, Any]]) -> list[str]:
    """Records with the same keys as one Markdown table; a `summary` record as a list."""
    lines: list[str] = []
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for record in records:
        if "summary" in record:
            summary = record["summary"]
            lines += ["", *(f"- {key}: **{value}**" for key, value in summary.items())]
            continue
        groups.setdefault(tuple(record), []).append(record)
    tables: list[str] = []
    for keys, rows in groups.items():
        tables += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        tables += ["| " + " | ".join(_cell(r[k]) for k in keys) + " |" for r in rows]
        tables.append("")
    return tables + lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
