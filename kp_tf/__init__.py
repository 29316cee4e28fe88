"""kp_tf: unsupervised keypoints guiding class-conditional video prediction (Kim et al., 2019).

Rooms, lower ones never importing higher ones: `kp_tf.config`, `kp_tf.cli`, `kp_tf.progress`,
`kp_tf.pretrained`, `kp_tf.conventions`; `kp_tf.layers`, `kp_tf.losses`, `kp_tf.viz`;
`kp_tf.data` (clips, readers, TFRecords, tf.data pipelines); `kp_tf.models` (detector,
translator, discriminators, motion generator); `kp_tf.run_folder`; `kp_tf.training` (the loop,
the two stages' trainers, pseudo-labels); `kp_tf.serving` (the SavedModel) and
`kp_tf.inference` (using it); `kp_tf.evaluation`; `kp_tf.stages` (the whole run in order); and
the commands `kp_tf.make_tfrecords`, `kp_tf.train`, `kp_tf.export`, `kp_tf.predict`,
`kp_tf.evaluate`, `kp_tf.fvd` (also installed as kp-make-tfrecords, kp-train, ...).
"""

import os
import platform

# Keras 3 must run on TensorFlow here: the data pipeline and training loops are TF.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# TensorFlow turns its oneDNN kernels on by default only on x86 CPUs with AVX512_VNNI,
# AVX512_BF16 or AMX; on an AVX2-only CPU it falls back to Eigen, which ran the synthetic
# preset's stage-1 step in 880-1,040 ms against 480-540 ms with oneDNN, and the stage-2 step in
# 199 against 86 ms (2-core AMD EPYC, 20 train_step calls on random batches). Set before
# TensorFlow is imported;
# TF_ENABLE_ONEDNN_OPTS=0 in the environment still turns it off.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# TensorFlow's C++ start-up lines (oneDNN notices, CUDA probing on a machine without a GPU) read
# like failures to a user: the commands hide them (kp_tf.cli) unless the user set this variable.
TF_LOGS_QUIETED = "TF_CPP_MIN_LOG_LEVEL" not in os.environ

__version__ = "0.1.0"
