"""Inference: find a trained model, load it, read images for it, rebuild its run's data.

Used by ``cifarlab.commands.predict`` and ``cifarlab.commands.evaluate``. Each module has one job:

- ``store``: the MLflow store training used (tracking URI, client, runs);
- ``source``: which model (``run=``, ``checkpoint=``, ``model=``), found without TensorFlow;
- ``labels``: where a model's class names come from;
- ``loading``: loading the located model with Keras, and its class probabilities;
- ``images``: finding image files and preparing them for a model;
- ``run_data``: the config and data of the run a model was trained in;
- ``predictions`` and ``grid``: predictions as a table, CSV/JSON and a figure.

Importing this package imports neither TensorFlow nor MLflow.
"""
