"""The sweep-job contract: the ticket a sweep hands its jobs, the report a job hands back."""

from __future__ import annotations

from cifarlab.sweeps.contract import (
    TICKET_ENV,
    JobReport,
    StudyTicket,
    SweepTicket,
    clear_ticket,
    read_report,
    read_reports,
    read_ticket,
    trial_jobs,
    write_report,
    write_ticket,
)


def test_the_ticket_crosses_in_one_variable_and_is_gone_after_the_sweep(monkeypatch):
    monkeypatch.delenv(TICKET_ENV, raising=False)
    assert read_ticket() is None  # outside a sweep
    study = StudyTicket(
        "sqlite:////tmp/optuna.db", "s", repeats=2, pruner={"_target_": "optuna.pruners.NopPruner"}
    )
    ticket = SweepTicket("host-1-2", 123, "a" * 32, ("optimizer.lr", "model"), study)
    write_ticket(ticket)
    assert read_ticket() == ticket
    clear_ticket()
    assert read_ticket() is None
    monkeypatch.setenv(TICKET_ENV, "{not json")
    assert read_ticket() is None


def test_a_trials_jobs_are_numbered_from_its_number_times_repeats():
    study = StudyTicket("sqlite:///x.db", "s", repeats=3)
    assert list(trial_jobs(2, 3)) == [6, 7, 8]
    assert {study.trial_number(num) for num in trial_jobs(2, 3)} == {2}
    assert StudyTicket("sqlite:///x.db", "s").trial_number(5) == 5


def test_reports_round_trip_and_the_sweep_reads_only_ended_ones_of_its_worker(tmp_path):
    write_report(tmp_path, JobReport(0, ["a=1"], worker="w1", status="finished", objective=0.5, run_id="r0"))
    write_report(tmp_path, JobReport(1, ["a=2"], worker="w1"))  # still running
    write_report(tmp_path, JobReport(2, ["a=3"], worker="w2", status="pruned", pruned_at_epoch=3))
    (tmp_path / "00003.json").write_text("{half")
    assert read_report(tmp_path, 2) == JobReport(2, ["a=3"], worker="w2", status="pruned", pruned_at_epoch=3)
    assert read_report(tmp_path, 3) is None and read_report(tmp_path, 9) is None
    assert [r.num for r in read_reports(tmp_path)] == [0, 2]
    assert [r.num for r in read_reports(tmp_path, "w1")] == [0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00000.json",
        "00001.json",
        "00002.json",
        "00003.json",
    ]


def test_a_sweep_counts_its_jobs_as_hydra_expands_the_overrides():
    from omegaconf import OmegaConf

    from cifarlab.sweeps.progress import planned_jobs

    grid = {"sweeper": {}, "overrides": {"task": ["a=1,2,3", "b=range(0,4)", "c=x", "d=choice(p,q)"]}}
    assert planned_jobs(OmegaConf.create({"hydra": grid})) == 3 * 4 * 2
    search = {"sweeper": {"n_trials": 5, "repeats": 3}, "overrides": {"task": ["optimizer.lr=0.1"]}}
    assert planned_jobs(OmegaConf.create({"hydra": search})) == 15
