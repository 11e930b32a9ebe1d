"""MixSweep: the platform layer. Ray Tune sweeps of MixUnlearn with Optuna search and MLflow records.

The `mixsweep` command (cli.py) is the entry point; each subcommand is one module:
run -> sweep.py, resume -> resume.py, export -> export.py, train -> train.py, ui -> ui.py, demo -> demo.py.
ablate -> ablate.py, report -> report.py (figures.py draws), compare -> compare.py; tables.py renders
the ablation and paper tables, evidence.py the hardware and versions line they carry.
Around them: cluster.py (Ray, resource checks), tracking.py (the MLflow store), state.py (a sweep on
disk), callback.py (closing the MLflow runs trials cannot close), errors.py (exit status 2).
"""
