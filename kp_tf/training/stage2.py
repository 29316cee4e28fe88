"""Stage 2: the class-conditional motion generator (cVAE + LSTM) against D_seq (paper §3.2).

G loss = λ_kl · KL + λ2 · L1 + λ3 · adversarial (eq. 5) on sequences decoded from the
posterior z; D_seq sees real pseudo-label sequences and those reconstructions. Same
separate-tape, separate-optimizer structure as stage 1.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kp_tf import losses
from kp_tf.models.motion import build_motion_models, motion_generator_losses
from kp_tf.training import loop


class Stage2Trainer:
    """Owns the motion generator, the sequence discriminator and their optimizers."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.generator, self.discriminator = build_motion_models(cfg)
        self.g_optimizer = loop.adam(cfg)
        self.d_optimizer = loop.adam(cfg)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self._schedule = loop.exponential_decay(cfg)

    def checkpoint_objects(self):
        return {"motion_generator": self.generator, "sequence_discriminator": self.discriminator,
                "g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer}

    def learning_rate(self, step):
        return self._schedule(step)

    @staticmethod
    def _replicas():
        return tf.distribute.get_strategy().num_replicas_in_sync

    def train_generator(self, batch):
        variables = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            reconstruction, mu, log_var = self.generator(
                (batch["sequence"], batch["first"], batch["action"]), training=True)
            fake_logits = self.discriminator(reconstruction, training=True)
            terms = motion_generator_losses(self.cfg, reconstruction, batch["sequence"], mu,
                                            log_var, fake_logits)
            scaled = terms["total"] / self._replicas()
        grads = tape.gradient(scaled, variables)
        self.g_optimizer.apply_gradients(zip(grads, variables))
        return reconstruction, {"g_loss": terms["total"], "kl": terms["kl"], "l1": terms["l1"],
                                "g_adversarial": terms["adversarial"]}

    def train_discriminator(self, real, fake):
        variables = self.discriminator.trainable_variables
        fake = tf.stop_gradient(fake)
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            loss = losses.discriminator_loss(real_logits, fake_logits)
            scaled = loss / self._replicas()
        grads = tape.gradient(scaled, variables)
        self.d_optimizer.apply_gradients(zip(grads, variables))
        return {"d_loss": loss, "_d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
                "_d_fake": tf.reduce_mean(tf.sigmoid(fake_logits))}

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
