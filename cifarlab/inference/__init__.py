"""Inference: find a trained model, load it, read images for it, rebuild its run's data.

The work behind ``cifarlab.commands.predict``, ``evaluate`` and ``export``. Each module has one job:

- ``store_options``: the options naming the MLflow store (``tracking.uri``, ``paths.mlruns_dir``);
- ``source``: which model (``run=``, ``checkpoint=``, ``model=``), found without TensorFlow;
- ``labels``: where a model's class names come from;
- ``loading``: loading the located model with Keras, and its class probabilities;
- ``images``: finding image files and preparing them for a model;
- ``run_data``: the config and data of the run a model was trained in;
- ``predictions`` and ``grid``: predictions as a table, CSV/JSON and a figure;
- ``formats``: a loaded model written as a SavedModel or LiteRT file;
- ``predict_images``, ``evaluate_run``, ``deploy``: what predict, evaluate and export do.

The store is read through ``cifarlab.tracking``. Importing this package imports
neither TensorFlow nor MLflow.
"""
