"""A Hydra launcher: submitit's SLURM launcher, watched for jobs SLURM will not run (see slurm_launcher.py)."""
