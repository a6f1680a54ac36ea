"""MLflow, in one place: client.py is the one owner of every MLflow write; mirror.py keeps each
trial's run in step with the results store during a sweep; sync.py opens and closes a sweep's
runs and back-fills MLflow after the fact; artifacts.py writes the files a trial leaves there."""
