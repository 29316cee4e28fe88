"""kp_tf: Unsupervised Keypoint Learning for Guiding Class-Conditional Video Prediction, TF2/Keras 3."""

from setuptools import find_packages, setup

setup(
    name="kp_tf",
    version="0.1.0",
    description=("TensorFlow 2 / Keras 3 reproduction of Kim et al., 'Unsupervised Keypoint Learning "
                 "for Guiding Class-Conditional Video Prediction' (NeurIPS 2019)"),
    license="Apache-2.0",
    python_requires=">=3.11,<3.13",
    packages=find_packages(include=["kp_tf", "kp_tf.*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorflow-hub>=0.16,<0.17",
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26,<3",
        "scipy>=1.11,<2",
        "absl-py>=2.1,<3",
        "opencv-python-headless>=4.9,<6",
        "Pillow>=10,<14",
    ],
    # xdist: the suite runs in two processes (the README test command, .ci/run)
    extras_require={"test": ["pytest>=8,<10", "pytest-xdist>=3.6,<4"]},
    # The commands beside `python -m kp_tf.X`; each module's console_main runs it.
    entry_points={"console_scripts": [
        "kp-train=kp_tf.train:console_main",
        "kp-export=kp_tf.export:console_main",
        "kp-predict=kp_tf.predict:console_main",
        "kp-evaluate=kp_tf.evaluate:console_main",
        "kp-fvd=kp_tf.fvd:console_main",
        "kp-animate=kp_tf.animate:console_main",
        "kp-interpolate=kp_tf.interpolate:console_main",
        "kp-make-tfrecords=kp_tf.make_tfrecords:console_main",
    ]},
)
