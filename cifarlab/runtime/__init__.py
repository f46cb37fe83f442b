"""Plumbing every stage may use: process signals, file locks, quiet TensorFlow logs, oneDNN kernels on x86,
the machine's CPU."""
