"""kp_tf: unsupervised keypoints guiding class-conditional video prediction (Kim et al., 2019).

Rooms: `kp_tf.data` (clips, readers, TFRecords, tf.data pipelines), `kp_tf.layers`,
`kp_tf.models` (detector, translator, discriminators, motion generator), `kp_tf.losses`,
`kp_tf.training` (the two stages' loops), `kp_tf.evaluation` (FVD, metrics), `kp_tf.export`.
"""

import os

# Keras 3 must run on TensorFlow here: the data pipeline and training loops are TF.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
