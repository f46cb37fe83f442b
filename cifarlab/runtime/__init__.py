"""Plumbing every stage may use: process signals, file locks, quiet TensorFlow logs, the machine's CPU."""
