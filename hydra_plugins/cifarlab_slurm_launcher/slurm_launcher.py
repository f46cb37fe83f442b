"""``hydra/launcher=slurm``: submitit's SLURM launcher, which says in one line why SLURM will not run the jobs.

The plugin's launcher submits the sweep's jobs as one array and waits inside
submitit; a request SLURM refuses ends in sbatch's traceback, and one SLURM lets
pend for ever waits for ever (without accounting, submitit cannot even see a
cancelled job end). This launcher is that one with a
``cifarlab.sweeps.launch_watch.LaunchWatch`` beside it: the refusal, or a pending
reason no waiting clears, is one line naming the ``hydra.launcher.*`` override to
change, and the jobs are cancelled; a job that ended without a result ends the
wait in one line once the others ended.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hydra.core.utils import JobReturn

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher


class WatchedSlurmLauncher(SlurmLauncher):
    """submitit's ``SlurmLauncher``, watched for jobs SLURM refuses or would leave pending for ever."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from submitit.core.utils import FailedJobError

        from cifarlab.runtime.interrupts import sigint_raises
        from cifarlab.runtime.quiet import stderr_without
        from cifarlab.sweeps import slurm_watch
        from cifarlab.sweeps.launch_watch import LaunchWatch

        # Its "Bypassing sacct error" warning at each poll, on clusters without accounting.
        logging.getLogger("submitit").setLevel(logging.ERROR)
        request = slurm_watch.SlurmRequest.of_launcher(self.params)
        watch = LaunchWatch(str(self.params["submitit_folder"]), request)
        watch.start()
        try:
            with stderr_without(slurm_watch.SCHEDULER_NOISE), sigint_raises():  # how the watch ends the wait
                return super().launch(job_overrides, initial_job_idx)
        except FailedJobError as err:  # sbatch refused the array
            raise slurm_watch.refusal(str(err), request) from None
        except KeyboardInterrupt:
            if watch.verdict is None:
                raise  # Ctrl-C or SIGTERM
            raise watch.verdict from None
        finally:
            watch.stop()
