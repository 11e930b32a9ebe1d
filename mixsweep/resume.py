"""`mixsweep resume SWEEP`: finish a sweep whose driver was interrupted (Ctrl-C, a killed process, a reboot).

    mixsweep resume quick

Tuner.restore reads Tune's experiment state: trials that ended stay as they are (they are not run
again), trials that were running restart from their last checkpoint, and the Optuna searcher (its
study in optuna.db) continues until the sweep has all its trials. The trainable is rebuilt exactly as
`run` built it, from the settings saved in mixsweep.json. The parent MLflow run is reopened, and each
resumed trial reopens its own child run (found by trial id), so the records continue where they stopped.
Before that, a killed driver's records are made to agree (mixsweep/reconcile.py): Tune's snapshot can be
older than what Optuna and MLflow hold.
"""
from __future__ import annotations

from ray import tune

from trainables import records

from . import cluster, state as sweep_state
from .reconcile import reconcile
from .sweep import fit, parent_closed_on_error, trainable_for


def resume_sweep(sweep: str, *, storage: str | None = None, address: str | None = None) -> sweep_state.SweepState:
    state = sweep_state.load(sweep, storage)
    with cluster.connected(address or state.address):
        cluster.check_resources(cpus_per_trial=state.cpus_per_trial, gpus_per_trial=state.gpus_per_trial)
        client = records.client(state.tracking_uri)
        parent = client.get_run(state.parent_run_id)
        if parent.info.status != "RUNNING":
            client.update_run(state.parent_run_id, status="RUNNING")
        if records.INTERRUPTED_TAG in parent.data.tags:
            client.delete_tag(state.parent_run_id, records.INTERRUPTED_TAG)
        print(f"resuming sweep {state.name} from {state.experiment_path} (parent run {state.parent_run_id})",
              flush=True)
        with parent_closed_on_error(state):
            for note in reconcile(state):
                print(f"sweep {state.name}: {note}", flush=True)
            tuner = tune.Tuner.restore(state.experiment_path, trainable=trainable_for(state), resume_unfinished=True)
            fit(tuner, state)
    return state
