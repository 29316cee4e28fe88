"""Launcher of `python -m kp_tf.make_tfrecords` for a checkout (see kp_tf/make_tfrecords.py)."""

import os
import sys

# The checkout this file is in, whatever kp_tf the environment has installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kp_tf.make_tfrecords import console_main  # noqa: E402

if __name__ == "__main__":
    console_main()
