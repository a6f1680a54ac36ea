"""The paired data sets, one module each, picked by `data.name` from the table in registry.py.

paired.py holds what every data set hands the trainer (two splits of matched inputs, what the
towers must accept, class prompts); tokenizer.py the word tokenizer of the generated captions.
A new data set is a module here, a config in trainers/config/data.py and one row of DATASETS
(docs/architecture.md).
"""
