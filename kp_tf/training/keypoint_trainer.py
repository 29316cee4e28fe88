"""Stage 1: keypoint detector + translator trained against the image discriminator (paper §3.1).

G loss = λ1 · perceptual (eq. 4) + adversarial (non-saturating) [+ equivariance, separation,
keypoint motion and keypoint coverage losses, off in the paper presets]; D loss = BCE(real, 1)
+ BCE(fake, 0) on the 'patch' logits. The generator (detector, image encoder, translator) and
the discriminator have their own tape and Adam optimizer. One step = a G update and then a D
update on the same batch, D seeing the fakes of G's forward pass: the original pulled a fresh
batch and recomputed G for its D step, which costs a third more compute for no known gain
(README, differences).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kp_tf import conventions, losses
from kp_tf.models.networks import Stage1Networks
from kp_tf.training import loop
from kp_tf.training.gan import AdversarialTrainer


def keypoint_spread(keypoints):
    """Mean distance of the keypoints from their centroid ([-1, 1] units): ~0 means collapse."""
    centre = tf.reduce_mean(keypoints, axis=1, keepdims=True)
    return tf.reduce_mean(tf.norm(keypoints - centre, axis=-1))


def background_fraction(keypoints, mask):
    """Fraction of keypoints where the translator copies the reference (mask > 0.5): those sit
    on what the model treats as static background rather than on the moving object."""
    size = tf.cast(tf.shape(mask)[1], keypoints.dtype)
    pix = tf.cast(tf.round(conventions.keypoints_to_pixels(keypoints, size)), tf.int32)
    pix = tf.clip_by_value(pix, 0, tf.shape(mask)[1] - 1)
    values = tf.gather_nd(mask[..., 0], tf.stack([pix[..., 1], pix[..., 0]], -1), batch_dims=1)
    return tf.reduce_mean(tf.cast(values > 0.5, tf.float32))


class KeypointTrainer(AdversarialTrainer):
    """Owns the stage-1 networks, the VGG19 perceptual loss and the two optimizers.

    Create it under the strategy's scope.
    """

    def __init__(self, cfg):
        self.precision = loop.resolve_precision(cfg.precision)
        loop.seed_networks(cfg.seed, stage=1)
        with loop.dtype_policy(self.precision):
            self.nets = Stage1Networks(cfg)
            self.perceptual = losses.PerceptualLoss(cfg.perceptual_layer_list,
                                                    weights=cfg.vgg_weights,
                                                    scales=cfg.perceptual_scale_list)
        self.discriminator = self.nets.discriminator
        self._init_optimizers(cfg, self.nets.generator_variables)
        # False in the plain-pair phase when not cfg.plain_pair_detector (train_keypoints):
        # read when a step is traced, and every `loop.fit` traces its own step.
        self.train_detector = True

    def checkpoint_objects(self):
        n = self.nets
        return {"detector": n.detector, "image_encoder": n.image_encoder,
                "translator": n.translator, "discriminator": n.discriminator,
                "g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer}

    def train_generator(self, batch):
        target = batch["target"]
        with tf.GradientTape() as tape:
            out = self.nets.translate(batch["reference"], target, training=True,
                                      detector_training=self.train_detector)
            perceptual = self.perceptual(out["output"], target)
            adversarial = losses.generator_adversarial_loss(
                self.discriminator(out["output"], training=True))
            total = (self.cfg.lambda_perceptual * perceptual
                     + self.cfg.lambda_image_adv * adversarial)
            metrics = {"perceptual": perceptual, "g_adversarial": adversarial}
            # The keypoint terms only train the detector: a frozen one skips them, and with
            # them its backward pass and the extra forward pass on the warped reference.
            if self.cfg.lambda_separation > 0 and self.train_detector:
                metrics["separation"] = losses.keypoint_separation(
                    tf.concat([out["reference_keypoints"], out["target_keypoints"]], 0),
                    self.cfg.separation_sigma)
                total += self.cfg.lambda_separation * metrics["separation"]
            motion, coverage = self.cfg.lambda_keypoint_motion, self.cfg.lambda_keypoint_coverage
            if (motion > 0 or coverage > 0) and self.train_detector:
                # one warp of the reference per level serves both terms; coverage reads 1/2 size
                errors = losses.keypoint_warp_errors(
                    batch["reference"], target, out["reference_keypoints"],
                    out["target_keypoints"], self.cfg.keypoint_motion_sigma,
                    scales=(1, 2, 4) if motion > 0 else (2,))
                if motion > 0:
                    metrics["keypoint_motion"] = losses.keypoint_motion(errors)
                    total += motion * metrics["keypoint_motion"]
                if coverage > 0:
                    metrics["keypoint_coverage"] = losses.keypoint_coverage(
                        errors[2], out["reference_keypoints"], out["target_keypoints"])
                    total += coverage * metrics["keypoint_coverage"]
            if "warped_reference" in batch and self.train_detector:
                warped = self.nets.detector(batch["warped_reference"], training=True)
                metrics["equivariance"] = losses.keypoint_equivariance(
                    out["reference_keypoints"], warped, batch["warp_matrix"], batch["warp_shift"])
                total += self.cfg.lambda_equivariance * metrics["equivariance"]
        variables = (self.nets.generator_variables if self.train_detector
                     else self.nets.renderer_variables)
        self._apply(tape, total, variables, self.g_optimizer)
        return out, {"g_loss": total, **metrics}

    def train_step(self, batch):
        out, g_losses = self.train_generator(batch)
        d_losses = self.train_discriminator(batch["target"], out["output"])
        diagnostics = {
            "_keypoint_spread": keypoint_spread(out["target_keypoints"]),
            "_keypoints_on_background": background_fraction(out["target_keypoints"], out["mask"]),
        }
        replicas = self._replicas()
        return {k: v / replicas for k, v in {**g_losses, **d_losses, **diagnostics}.items()}

    def write_images(self, batch, step, max_images=6):
        from kp_tf import viz

        reference = batch["reference"][:max_images]
        target = batch["target"][:max_images]
        out = self.nets.translate(reference, target, training=False)
        grid = viz.display_grid(
            [reference, target, out["output"], np.clip(out["generated"], -1, 1),
             np.repeat(np.asarray(out["mask"]) * 2 - 1, 3, axis=-1)],
            [(reference, out["reference_keypoints"]), (target, out["target_keypoints"])])
        tf.summary.image("reference | target | output | generated | mask | kp(ref) | kp(target)"
                         .replace(" ", ""), grid[None], step=step)
