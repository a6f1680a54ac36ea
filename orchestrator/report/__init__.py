"""Reading a stored sweep back: the HTML report with its figures (build.py, figures.py,
pairs.py), and trials grouped by a setting with intervals (compare.py)."""
