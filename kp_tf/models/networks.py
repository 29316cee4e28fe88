"""The networks of each stage built from a `kp_tf.config.Config`, and stage 1's paired pass."""

from __future__ import annotations

from keras import ops

from kp_tf.models.detector import build_detector
from kp_tf.models.discriminators import ImageDiscriminator, SequenceDiscriminator
from kp_tf.models.motion_generator import MotionGenerator
from kp_tf.models.translator import ImageEncoder, build_translator


class Stage1Networks:
    """The four stage-1 networks built for one config, and the paired forward pass.

    `translate(reference, target)` is the training forward pass of eq. (3): detect keypoints
    on both frames, encode the reference, render the target.
    """

    def __init__(self, cfg):
        m = cfg.batchnorm_momentum
        self.detector = build_detector(cfg)
        self.image_encoder = ImageEncoder(cfg.image_size, cfg.encoder_filters, m,
                                          name="image_encoder")
        self.translator = build_translator(cfg)
        self.discriminator = ImageDiscriminator(
            cfg.image_size, cfg.discriminator_filters, cfg.discriminator_layers,
            name="image_discriminator")

    @property
    def generator_variables(self):
        return self.detector.trainable_variables + self.renderer_variables

    @property
    def renderer_variables(self):
        """The image encoder's and translator's: what a step with a frozen detector trains."""
        return self.image_encoder.trainable_variables + self.translator.trainable_variables

    def translate(self, reference, target, training=False, detector_training=None):
        """→ dict reference_keypoints, target_keypoints, output, generated, mask.

        `detector_training=False` with `training=True` trains the encoder and translator on
        the keypoints of a frozen detector: inference-mode BatchNorm and no gradient into it.
        """
        reference, target = ops.convert_to_tensor(reference), ops.convert_to_tensor(target)
        detector_training = training if detector_training is None else detector_training
        both = self.detector(ops.concatenate([reference, target], axis=0),
                             training=detector_training)
        if not detector_training:
            both = ops.stop_gradient(both)
        batch = ops.shape(reference)[0]
        ref_kp, tgt_kp = both[:batch], both[batch:]
        features = self.image_encoder(reference, training=training)
        out = self.translator([reference, features, ref_kp, tgt_kp], training=training)
        return {"reference_keypoints": ref_kp, "target_keypoints": tgt_kp, **out}



def build_motion_models(cfg, seed=None):
    """(MotionGenerator, SequenceDiscriminator) for a `kp_tf.config.Config`, weights built.

    Both are called once on zeros of the configured shapes, so their variables exist (for
    checkpoint restore and optimizer build) before the first training step.
    `seed` seeds the generator's sampling (default cfg.seed).
    """
    generator = MotionGenerator(
        num_keypoints=cfg.num_keypoints,
        num_actions=cfg.num_actions,
        lstm_units=cfg.lstm_units,
        lstm_layers=cfg.lstm_layers,
        latent_dim=cfg.latent_dim,
        sequence_length=cfg.sequence_length,
        decoder_input_dim=cfg.decoder_input_dim,
        residual=cfg.motion_residual,
        condition_every_step=cfg.decoder_condition_every_step,
        seed=cfg.seed if seed is None else seed,
        name="motion_generator")
    discriminator = SequenceDiscriminator(
        num_keypoints=cfg.num_keypoints,
        lstm_units=cfg.lstm_units,
        lstm_layers=cfg.lstm_layers,
        name="sequence_discriminator")
    sequence = ops.zeros((1, cfg.sequence_length, cfg.num_keypoints, 2))
    k0 = ops.zeros((1, cfg.num_keypoints, 2))
    action = ops.zeros((1, cfg.num_actions)) if cfg.num_actions else None
    generator((sequence, k0, action), training=False)
    discriminator(sequence)
    return generator, discriminator

