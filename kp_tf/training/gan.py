"""What both stages' trainers share: two Adam optimizers on one schedule, and the D update.

The discriminator step is the same in both stages (BCE(real, 1) + BCE(fake, 0) on detached
fakes); each stage's subclass writes its own generator step.
"""

from __future__ import annotations

import tensorflow as tf

from kp_tf import losses
from kp_tf.training import loop


class AdversarialTrainer:
    """Base of the stage trainers. Subclasses set `self.discriminator` and call
    `_init_optimizers(cfg, generator_variables)`; create them under the strategy's scope."""

    def _init_optimizers(self, cfg, generator_variables):
        self.cfg = cfg
        self.g_optimizer = loop.adam(cfg)
        self.d_optimizer = loop.adam(cfg)
        self.g_optimizer.build(generator_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self._schedule = loop.exponential_decay(cfg)

    def learning_rate(self, step):
        return self._schedule(step)

    @staticmethod
    def _replicas():
        return tf.distribute.get_strategy().num_replicas_in_sync

    def _apply(self, tape, loss, variables, optimizer):
        """One update on the global-batch mean: each replica's gradient is divided by the number
        of replicas, and the strategy sums them."""
        replicas = self._replicas()
        grads = [g / replicas for g in tape.gradient(loss, variables)]
        optimizer.apply_gradients(zip(grads, variables))

    def train_discriminator(self, real, fake):
        variables = self.discriminator.trainable_variables
        fake = tf.stop_gradient(fake)
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            loss = losses.discriminator_loss(real_logits, fake_logits)
        self._apply(tape, loss, variables, self.d_optimizer)
        return {"d_loss": loss, "_d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
                "_d_fake": tf.reduce_mean(tf.sigmoid(fake_logits))}
