"""Stage 2: the class-conditional motion generator (cVAE + LSTM) against D_seq (paper §3.2).

G loss = λ_kl · KL + λ2 · L1 + λ3 · adversarial (eq. 5) on sequences decoded from the
posterior z; D_seq sees real pseudo-label sequences and those reconstructions. Same
separate-tape, separate-optimizer structure as stage 1.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kp_tf.losses import motion_generator_losses
from kp_tf.models.networks import build_motion_models
from kp_tf.training import loop
from kp_tf.training.gan import AdversarialTrainer


class MotionTrainer(AdversarialTrainer):
    """Owns the motion generator, the sequence discriminator and their optimizers."""

    def __init__(self, cfg):
        loop.seed_networks(cfg.seed, stage=2)
        self.generator, self.discriminator = build_motion_models(cfg)
        self._init_optimizers(cfg, self.generator.trainable_variables)

    def checkpoint_objects(self):
        # The sampler's state (the posterior noise) too, so that a resumed run draws what an
        # uninterrupted one would: Keras keeps it outside the model's tracked variables.
        return {"motion_generator": self.generator, "sequence_discriminator": self.discriminator,
                "g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer,
                "sampler_state": self.generator.seed_generator.state.value}

    def train_generator(self, batch):
        with tf.GradientTape() as tape:
            reconstruction, mu, log_var = self.generator(
                (batch["sequence"], batch["first"], batch["action"]), training=True)
            fake_logits = self.discriminator(reconstruction, training=True)
            terms = motion_generator_losses(self.cfg, reconstruction, batch["sequence"], mu,
                                            log_var, fake_logits)
        self._apply(tape, terms["total"], self.generator.trainable_variables, self.g_optimizer)
        return reconstruction, {"g_loss": terms["total"], "kl": terms["kl"], "l1": terms["l1"],
                                "g_adversarial": terms["adversarial"]}

    def train_step(self, batch):
        reconstruction, g_losses = self.train_generator(batch)
        d_losses = self.train_discriminator(batch["sequence"], reconstruction)
        replicas = self._replicas()
        return {k: v / replicas for k, v in {**g_losses, **d_losses}.items()}

    def write_images(self, batch, step, max_sequences=4, frames=8):
        """Real vs prior-sampled keypoint sequences drawn as point plots over time."""
        from kp_tf import viz

        first = batch["first"][:max_sequences]
        sampled = np.asarray(self.generator.sample(first, batch["action"][:max_sequences], seed=step))
        real = np.asarray(batch["sequence"][:max_sequences])
        length = real.shape[1]
        picks = np.linspace(0, length - 1, frames).round().astype(int)
        blank = np.full((len(first), frames, 64, 64, 3), 255, np.uint8)
        rows = [viz.draw_keypoints(blank, real[:, picks]).reshape(-1, 64, 64, 3),
                viz.draw_keypoints(blank, sampled[:, picks]).reshape(-1, 64, 64, 3)]
        tf.summary.image("keypoint_sequences/real_then_sampled",
                         viz.image_grid(rows)[None], step=step)
