"""Performance benchmark of cifarlab on this machine.

    python -m cifarlab bench [quick=true] [out=bench.json] [data_dir=DIR] [synthetic=true]

Measures, on CIFAR-shaped data (the real 5k subset in ``../shared/data/cifar10-subset``
beside the checkout when present, or ``data_dir=``; generated 32x32x3 images otherwise):

- ``pipeline_images_per_s``: the tf.data training pipeline alone (cnn_bn's
  ``shift_flip_rotate`` augmentation, batch 64), nothing consuming it but a loop;
- ``train_images_per_s``: cnn_bn training (cifarlab's compile: Nadam, batch 64) fed by it;
- ``pipeline_stall_ratio``: throughput fed by the pipeline / throughput fed the same
  augmented batches prepared in memory in advance (1.0: the pipeline never stalls training);
- ``framework_overhead_ratio``: steady per-epoch time of a real ``python -m cifarlab``
  run (default callbacks, MLflow on; epoch timing read back from MLflow) / that of a
  bare ``keras.Model.fit`` of the same model, split, batch size, augmentation and
  validation data, each in its own subprocess, run alternately; the first epoch
  (tracing) is dropped;
- ``cfg_job_seconds``: median wall time of ``python -m cifarlab --cfg job``;
- ``flops_utilization``: cnn_bn's training FLOP/s (analytic count: 2 x MACs of every
  Conv/Dense forward, x3 for forward + backward) / the measured matmul peak of the dtype
  the run computes in (bfloat16 where ``trainer.precision=auto`` picks it);
  ``flops_utilization_float32``: the same over the float32 peak;
- ``mlflow_overhead_ratio``: one call of cifarlab's per-epoch MLflow logger into a real
  SQLite store / the steady epoch time;
- ``speedup_<switch>``: cnn_bn training throughput with one speed switch / the default
  (XLA, mixed_bfloat16, thread settings, steps_per_execution, caching), with a short
  accuracy check for the switches that change the arithmetic; for switches on by default
  (fused BatchNorm, frozen cancelled biases, and bfloat16 where
  ``trainer.precision=auto`` picks it): the default / the switch off; fast dropout: on /
  off, with what ``trainer.fast_dropout=auto`` chose here and its calibration.

The JSON's ``machine`` names the CPU model, its ISA features, the usable cores and the
library versions, so that two machines' results can be told apart.

Load from other processes only ever slows a measurement down, and this machine's
speed drifts by ~15% over minutes. So every variant is measured in several rounds,
alternated (rotating order) with the others. Within a measurement, a training
throughput is that of its fastest run of consecutive steps (``Plan.window_steps``),
as the matmul peak is the fastest of its repeats: the same best-of estimate on
both sides of a ratio. Throughputs are the best round (the closest to what this
machine does); ratios (FLOP utilisation, speedups) are the median over rounds of
the ratio measured within each round, so both sides of a ratio are taken seconds
apart and drift cancels. The stall ratio, which must resolve a few percent, is the
median over ``1 + Plan.stall_pairs`` pairs a round, each pair's two sides measured
back to back, each side first in turn. Ratios of the bests are kept in ``details``.
Nothing here asserts on time: the targets are reported, met or not.

The steps, one module each: ``plan`` (what to measure, targets, the order of a
round), ``flops`` and ``throughput`` (the measurements), ``variants`` (cnn_bn as a
run builds it, one per speed switch), ``rounds``, ``switches`` and ``callback_cost``
(the in-process stage, ``in_process``), ``subprocess_stages`` and ``workers``
(measurements in processes of their own), ``runner`` (all of it, in order),
``report`` (JSON, table, targets met) and ``cli``.
"""
