"""GFLA's two-stage training, driven step by step by the runner and resumable bit for bit.

Stage 1 (only for ``warper.two_stage``) trains ``warper.pretrain_parameters()`` alone with
sampling correctness x20 + affine regularisation x0.01 (``train.stage1_weights``).  Stage 2 trains
the generator end to end with L1, VGG content and style, LSGAN and, when the warper's plan carries
``"flows"``, correctness and regularisation (``train.stage2_weights``), plus ``warper.extra_losses``.
Per iteration: forward, a discriminator step on the detached fake, a generator step with D frozen.
Adam with betas (beta1, beta2) = (0, 0.999) by default, D lr = d_lr_ratio x lr, constant LR unless
``train.lr_decay`` > 0 (then linear decay over that fraction of each stage's last steps, see
:func:`lr_factor`).

Face animation (``cfg.kind == "face_animation"``) is recurrent (gfla-facts §3.2): two sources, the
previous *generated* frame and the reference (first) frame, previous = reference for the first
frame; a clip is processed in chunks of ``train.chunk_length`` frames, one optimiser step per
chunk (per-frame losses summed over the chunk), the previous frame detached across chunks, and the
image GAN applied to one random frame of the chunk.  The video GAN (``video_gan``) shows a second
ResDiscriminator the consecutive differences of ``train.video_gan_frames`` frames (3 frames: 2
differences, 6 channels, the original's D_V) from a random window inside the chunk, real and
generated; chunks shorter than the window (a clip's last one) skip it.  In stage 1 (no generator
yet) the previous source is the previous *real* frame.

Resuming: :meth:`Trainer.state_dict` holds the models, optimisers, stage, step, the data position
(epoch, batches consumed, position inside the current clip) and the torch/numpy/python RNG states.
Batches come in a seeded order that depends only on (seed, epoch), so a resumed run continues with
exactly the batches and random numbers of an uninterrupted one (bit-identical on CPU; with
``num_workers > 0`` as long as the dataset's randomness does not depend on worker RNG streams).

Learning curve: given a ``curve_set`` (the test split) and ``train.eval_every`` > 0, the trainer
records a :class:`bench.curves.LearningCurve` (rank 0 only) after the steps where a point is due,
without touching the training trajectory; its state is part of :meth:`Trainer.state_dict`.

Under torchrun each rank trains on its shard of every global batch, gradients are averaged over the
ranks before every optimiser step, and the NaN/Inf check agrees across ranks (``bench.distributed``).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bench import distributed, losses
from bench.config import TaskConfig
from bench.curves import LearningCurve, check_schedule
from bench.models.discriminator import ResDiscriminator
from bench.models.generator import Generator, build_generator
from bench.models.vgg import VGGFeatures
from bench.warp import TransportTruth, WarpInputs

STAGE_TERMS = {
    1: ("correctness", "regularization"),
    2: ("correctness", "regularization", "l1", "gan", "video_gan", "content", "style"),
}
FLOW_TERMS = ("correctness", "regularization")
StepCallback = Callable[[int, int, dict[str, float]], None]


def _to_cpu(value: Any) -> Any:
    """Tensors (nested in lists and dicts) moved to the CPU as float."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; names the stage, step and term."""

    def __init__(self, stage: int, step: int, term: str, value: float) -> None:
        self.stage, self.step, self.term, self.value = stage, step, term, value
        super().__init__(f"stage {stage}, step {step}: loss term {term!r} is not finite ({value})")


def _validate_weights(weights: dict[str, float], stage: int) -> dict[str, float]:
    unknown = set(weights) - set(STAGE_TERMS[stage])
    if unknown:
        key = sorted(unknown)[0]
        raise ValueError(
            f"train.stage{stage}_weights.{key}: unknown loss term; stage {stage} knows {', '.join(STAGE_TERMS[stage])}"
        )
    return {k: float(v) for k, v in weights.items() if v}


def frame_differences(clip: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) frames -> (B, (T - 1) * C, H, W): consecutive differences stacked as channels."""
    return (clip[:, 1:] - clip[:, :-1]).flatten(1, 2)


def lr_factor(step: int, stage_steps: int, decay: float) -> float:
    """Multiplier of the base lr for 0-based ``step`` of a stage of ``stage_steps`` steps.

    pix2pix's 'lambda' policy per stage: constant, then over the last ``round(decay * stage_steps)``
    steps a linear fall ``1 - k / (n + 1)`` for the k-th of those n steps, so no step has lr 0.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"train.lr_decay: expected a fraction in [0, 1], got {decay}")
    decay_steps = round(decay * stage_steps)
    into_decay = step - (stage_steps - decay_steps) + 1
    return 1.0 - max(0, into_decay) / (decay_steps + 1)


def epoch_batches(size: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of ``epoch``: a permutation seeded by (seed, epoch), incomplete last batch dropped."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(size, generator=generator).tolist()
    batch_size = min(batch_size, size)
    return [order[i : i + batch_size] for i in range(0, size - batch_size + 1, batch_size)]



def video_ground_truth(video: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A video sample's ground-truth transport keys (``flows_gt``, ``visibility_gt``), empty without them."""
    return {name: video[name] for name in ("flows_gt", "visibility_gt") if name in video}

class Trainer:
    """Trains one warper under the shared backbone; see the module docstring.

    ``structure_channels`` defaults to the first sample's; ``device`` may be ``"auto"``.  The
    constructor seeds the global torch/numpy/python RNGs with ``seed`` (model init draws from them).
    ``on_step`` receives the *unweighted* loss terms, ``total`` (the weighted generator objective)
    and ``discriminator`` (the D loss) as floats.
    """

    def __init__(
        self,
        cfg: TaskConfig,
        warper_name: str,
        train_set: Dataset,
        device: torch.device | str,
        seed: int,
        num_sources: int = 1,
        structure_channels: int | None = None,
        curve_set: Dataset | None = None,
    ) -> None:
        self.cfg = cfg
        self.warper_name = warper_name
        self.train_set = train_set
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.seed = seed
        self.video = cfg.kind == "face_animation"
        if len(train_set) == 0:  # type: ignore[arg-type]
            raise ValueError("the training set is empty")
        if structure_channels is None:
            first = train_set[0]
            structure_channels = first["structures"].shape[1] if self.video else first["source_structure"].shape[0]
        self.num_sources = 2 if self.video else num_sources
        self.weights = {
            1: _validate_weights(cfg.train.stage1_weights, 1),
            2: _validate_weights(cfg.train.stage2_weights, 2),
        }

        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        self.generator: Generator = build_generator(cfg, warper_name, self.num_sources, structure_channels)
        self.generator.to(self.device)
        self.warper = self.generator.warper
        self.reads_truth = self.warper.role == "oracle"  # only an oracle is handed the ground truth
        self.discriminator = ResDiscriminator(cfg.model).to(self.device)
        self.video_discriminator = self._build_video_discriminator()
        self.vgg = VGGFeatures(cfg.model.vgg).to(self.device)
        self.scale_layers = [spec.layer for spec in self.warper.setup.scales]
        self.scale_kernels = [spec.kernel_size for spec in self.warper.setup.scales]
        self.correctness_layers = (
            {losses.correctness_layer(layer) for layer in self.scale_layers} if self.warper.uses_flow else set()
        )

        train = cfg.train
        betas = (train.beta1, train.beta2)
        self.two_stage = self.warper.two_stage and train.stage1_steps > 0
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "g": torch.optim.Adam(self.generator.parameters(), lr=train.lr, betas=betas),
            "d": torch.optim.Adam(self.discriminator.parameters(), lr=train.lr * train.d_lr_ratio, betas=betas),
        }
        if self.video_discriminator is not None:
            self.optimizers["dv"] = torch.optim.Adam(
                self.video_discriminator.parameters(), lr=train.lr * train.d_lr_ratio, betas=betas
            )
        if self.two_stage:
            self.optimizers["stage1"] = torch.optim.Adam(self.warper.pretrain_parameters(), lr=train.lr, betas=betas)

        # Base lrs from the config, not from optimiser state (checkpoints of any age resume alike).
        self._base_lr = {name: optimizer.param_groups[0]["lr"] for name, optimizer in self.optimizers.items()}
        lr_factor(0, 1, train.lr_decay)  # a bad fraction fails here, not after stage 1
        check_schedule(train.eval_every, train.curve_images)

        self.stage = 1 if self.two_stage else 2
        self.step = 0
        self.epoch = 0
        self.batches_taken = 0  # batches consumed in the current epoch
        self._iterator: Iterator | None = None
        self._clip: dict[str, torch.Tensor] | None = None  # video: clip batch in progress
        self._chunk_start = 0
        self._previous: tuple[torch.Tensor, torch.Tensor] | None = None  # video: detached carry
        self.curve: LearningCurve | None = None
        if curve_set is not None and train.eval_every > 0 and distributed.is_main():
            self.curve = LearningCurve(curve_set, self.video, train.eval_every, train.curve_images, seed,
                                       batch_size=cfg.eval.batch_size)

    def _build_video_discriminator(self) -> ResDiscriminator | None:
        """The face-animation video D (when ``video_gan`` has a weight); checks the window fits a chunk."""
        if not (self.video and "video_gan" in self.weights[2]):
            return None
        train = self.cfg.train
        if train.video_gan_frames < 2:
            raise ValueError(f"train.video_gan_frames: expected at least 2 frames, got {train.video_gan_frames}")
        if train.chunk_length < train.video_gan_frames:
            raise ValueError(
                f"train.video_gan_frames ({train.video_gan_frames}) must not exceed train.chunk_length "
                f"({train.chunk_length}): the video D sees frames of one chunk; lower it or set "
                f"train.stage2_weights.video_gan=0"
            )
        channels = 3 * (train.video_gan_frames - 1)
        return ResDiscriminator(self.cfg.model, in_channels=channels).to(self.device)

    # -- schedule -----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.stage == 2 and self.step >= self.cfg.train.stage2_steps

    def run(self, on_step: StepCallback | None = None, max_steps: int | None = None) -> None:
        """Train from the current position to the end of both stages (or for ``max_steps`` steps).

        ``on_step(stage, step, losses)`` is called after every step (``step`` counts completed steps
        of that stage from 1); ``state_dict()`` taken there resumes right after that step.
        """
        done = 0
        while max_steps is None or done < max_steps:
            if self.stage == 1 and self.step >= self.cfg.train.stage1_steps:
                self.stage, self.step = 2, 0
                self._clip, self._previous = None, None
            if self.finished:
                return
            self.generator.train()
            self.discriminator.train()
            self._set_learning_rates()
            values = self._video_step() if self.video else self._pair_step()
            self.step += 1
            done += 1
            if self.curve is not None:
                stage_steps = self.cfg.train.stage1_steps if self.stage == 1 else self.cfg.train.stage2_steps
                self.curve.observe(self.stage, self.step, stage_steps, values, self._generate_for_curve, self.device)
            if on_step is not None:
                on_step(self.stage, self.step, values)

    # -- data ---------------------------------------------------------------------------------
    def _next_batch(self) -> dict[str, Any]:
        size = len(self.train_set)  # type: ignore[arg-type]
        while True:
            if self._iterator is None:
                batches = distributed.shard_batches(
                    epoch_batches(size, self.cfg.train.batch_size, self.seed, self.epoch), self.cfg.train.batch_size
                )
                loader = DataLoader(
                    self.train_set,
                    batch_sampler=batches[self.batches_taken :],
                    num_workers=self.cfg.train.num_workers,
                    generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch),
                )
                self._iterator = iter(loader)
            try:
                batch = next(self._iterator)
            except StopIteration:
                self.epoch, self.batches_taken, self._iterator = self.epoch + 1, 0, None
                continue
            self.batches_taken += 1
            return batch

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # -- loss helpers -------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        enabled = self.cfg.train.amp and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _check_finite(self, terms: dict[str, torch.Tensor]) -> None:
        """Raise NonFiniteLossError for the first term that is NaN or infinite on any rank."""
        values = torch.stack([value.detach().float().sum() for value in terms.values()])
        bad = distributed.any_rank(~torch.isfinite(values))
        for term, value, flag in zip(terms, values.tolist(), bad.tolist()):
            if flag:
                raise NonFiniteLossError(self.stage, self.step + 1, term, value)

    def _set_learning_rates(self) -> None:
        """Scale every optimiser's base lr by :func:`lr_factor` for the step about to be taken."""
        train = self.cfg.train
        steps = train.stage1_steps if self.stage == 1 else train.stage2_steps
        factor = lr_factor(self.step, steps, train.lr_decay)
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self._base_lr[name] * factor

    def _optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average the gradients of the optimiser's parameters over the ranks, then step."""
        distributed.average_gradients(p for group in optimizer.param_groups for p in group["params"])
        optimizer.step()

    def _real_features(self, image: torch.Tensor, layers: set[str]) -> dict[str, torch.Tensor]:
        """VGG features of a real (or detached) image: no gradient needed."""
        if not layers:
            return {}
        with torch.no_grad():
            return self.vgg(image.float(), layers)

    def _source_layers(self, weights: dict[str, float]) -> set[str]:
        """The VGG layers of the source images that the correctness loss needs."""
        return self.correctness_layers if "correctness" in weights else set()

    def _perceptual_layers(self, weights: dict[str, float]) -> set[str]:
        """The VGG layers the weighted content and style terms compare."""
        layers: set[str] = set()
        if "content" in weights:
            layers |= set(losses.CONTENT_LAYERS)
        if "style" in weights:
            layers |= set(losses.style_layers(self.vgg.network))
        return layers

    def _target_layers(self, weights: dict[str, float]) -> set[str]:
        """The VGG layers of the ground truth that the weighted terms need (one pass per image)."""
        return self._source_layers(weights) | self._perceptual_layers(weights)

    def _flow_terms(
        self,
        plan: dict[str, Any],
        source_features: list[dict[str, torch.Tensor]],
        target_features: dict[str, torch.Tensor],
        weights: dict[str, float],
    ) -> dict[str, torch.Tensor]:
        """Correctness and regularisation of the plan's flows, for the terms that have a weight."""
        terms: dict[str, torch.Tensor] = {}
        if "flows" not in plan or not self.warper.uses_flow:  # e.g. an oracle's given flows
            return terms
        flows = [[flow.float() for flow in scale] for scale in plan["flows"]]
        if "correctness" in weights:
            terms["correctness"] = losses.correctness_loss(source_features, target_features, flows, self.scale_layers)
        if "regularization" in weights:
            terms["regularization"] = losses.regularization_loss(flows, self.scale_kernels)
        return terms

    def _image_terms(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        real_features: dict[str, torch.Tensor],
        weights: dict[str, float],
    ) -> dict[str, torch.Tensor]:
        """L1, VGG content and style of a generated image against its ground truth."""
        terms: dict[str, torch.Tensor] = {}
        fake = fake.float()
        if "l1" in weights:
            terms["l1"] = losses.l1_loss(fake, real)
        wanted = self._perceptual_layers(weights)
        if wanted:
            fake_features = self.vgg(fake, wanted)
            if "content" in weights:
                terms["content"] = losses.content_loss(fake_features, real_features)
            if "style" in weights:
                terms["style"] = losses.style_loss(fake_features, real_features, losses.style_layers(self.vgg.network))
        return terms

    def _discriminator_step(self, fake: torch.Tensor, real: torch.Tensor, video: bool = False) -> torch.Tensor:
        """One step of the image (or video) D on the detached fake; returns the D loss."""
        discriminator = self.video_discriminator if video else self.discriminator
        name = "video_discriminator" if video else "discriminator"
        discriminator.requires_grad_(True)
        optimizer = self.optimizers["dv" if video else "d"]
        optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = losses.lsgan_discriminator_loss(discriminator(real), discriminator(fake.detach()))
        self._check_finite({name: loss})
        loss.backward()
        self._optimizer_step(optimizer)
        discriminator.requires_grad_(False)
        return loss

    def _generator_step(
        self,
        optimizer_name: str,
        terms: dict[str, torch.Tensor],
        weights: dict[str, float],
        extra: dict[str, torch.Tensor],
    ) -> dict[str, float]:
        """Weighted sum of the terms (plus already weighted extras), checked, back-propagated, stepped."""
        total = sum(weights[name] * value for name, value in terms.items()) + sum(extra.values())
        if not isinstance(total, torch.Tensor):
            raise ValueError(
                f"stage {self.stage}: no loss term applies (weights {weights}, warper "
                f"{self.warper_name!r}); check train.stage{self.stage}_weights"
            )
        self._check_finite({**terms, **extra, "total": total})
        self.generator.zero_grad(set_to_none=True)
        total.backward()
        self._optimizer_step(self.optimizers[optimizer_name])
        values = {name: float(value.detach()) for name, value in {**terms, **extra}.items()}
        values["total"] = float(total.detach())
        return values

    # -- pair tasks ---------------------------------------------------------------------------
    def _pair_inputs(self, batch: dict[str, Any]) -> WarpInputs:
        truth = TransportTruth.of_pairs(batch) if self.reads_truth else None
        return WarpInputs([batch["source_image"]], [batch["source_structure"]], batch["target_structure"],
                          ground_truth=truth)

    def _pair_step(self) -> dict[str, float]:
        batch = self._to_device(self._next_batch())
        inputs = self._pair_inputs(batch)
        weights = self.weights[self.stage]
        source, target = batch["source_image"], batch["target_image"]
        source_features = [self._real_features(source, self._source_layers(weights))]
        target_features = self._real_features(target, self._target_layers(weights))
        if self.stage == 1:
            with self._autocast():
                plan = self.warper.plan(inputs)
            terms = self._flow_terms(plan, source_features, target_features, weights)
            return self._generator_step("stage1", terms, weights, {})
        with self._autocast():
            fake, plan = self.generator(inputs)
        d_value = self._discriminator_step(fake, target) if "gan" in weights else None
        terms = self._image_terms(fake, target, target_features, weights)
        terms.update(self._flow_terms(plan, source_features, target_features, weights))
        if "gan" in weights:
            with self._autocast():
                terms["gan"] = losses.lsgan_generator_loss(self.discriminator(fake))
        extra = self.warper.extra_losses(plan, inputs)
        values = self._generator_step("g", terms, weights, extra)
        if d_value is not None:
            values["discriminator"] = float(d_value.detach())
        return values

    # -- video (face animation) ---------------------------------------------------------------
    def _video_step(self) -> dict[str, float]:
        if self._clip is None:
            self._clip = self._to_device(self._next_batch())
            self._chunk_start, self._previous = 0, None
        frames, structures = self._clip["frames"], self._clip["structures"]
        length = frames.shape[1]
        start = self._chunk_start
        stop = min(start + self.cfg.train.chunk_length, length)
        weights = self.weights[self.stage]
        reference, reference_structure = frames[:, 0], structures[:, 0]
        summed: dict[str, torch.Tensor] = {}
        extra: dict[str, torch.Tensor] = {}
        fakes: list[torch.Tensor] = []

        def accumulate(target: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> None:
            for name, value in new.items():
                target[name] = target[name] + value if name in target else value

        source_layers, target_layers = self._source_layers(weights), self._target_layers(weights)
        reference_features = self._real_features(reference, source_layers)
        previous = self._previous
        for t in range(start, stop):
            if self.stage == 1:  # previous real frame (the reference for the first frame)
                previous = (frames[:, t - 1], structures[:, t - 1]) if t > 0 else (reference, reference_structure)
            elif previous is None:
                previous = (reference, reference_structure)
            inputs = WarpInputs([previous[0], reference], [previous[1], reference_structure], structures[:, t],
                                ground_truth=TransportTruth.of_frame(self._clip, t) if self.reads_truth else None)
            source_features = [self._real_features(previous[0].detach(), source_layers), reference_features]
            target_features = self._real_features(frames[:, t], target_layers)
            if self.stage == 1:
                with self._autocast():
                    plan = self.warper.plan(inputs)
                accumulate(summed, self._flow_terms(plan, source_features, target_features, weights))
                continue
            with self._autocast():
                fake, plan = self.generator(inputs)
            fakes.append(fake)
            accumulate(summed, self._image_terms(fake, frames[:, t], target_features, weights))
            accumulate(summed, self._flow_terms(plan, source_features, target_features, weights))
            accumulate(extra, self.warper.extra_losses(plan, inputs))
            previous = (fake, structures[:, t])

        d_values: dict[str, torch.Tensor] = {}
        if self.stage == 2 and "gan" in weights:
            pick = int(torch.randint(len(fakes), (1,)))
            real = frames[:, start + pick]
            d_values["discriminator"] = self._discriminator_step(fakes[pick], real)
            with self._autocast():
                summed["gan"] = losses.lsgan_generator_loss(self.discriminator(fakes[pick]))
        window = self.cfg.train.video_gan_frames
        if self.stage == 2 and self.video_discriminator is not None and len(fakes) >= window:
            first = int(torch.randint(len(fakes) - window + 1, (1,)))
            fake_motion = frame_differences(torch.stack(fakes[first : first + window], dim=1))
            real_motion = frame_differences(frames[:, start + first : start + first + window])
            d_values["video_discriminator"] = self._discriminator_step(fake_motion, real_motion, video=True)
            with self._autocast():
                summed["video_gan"] = losses.lsgan_generator_loss(self.video_discriminator(fake_motion))
        values = self._generator_step("stage1" if self.stage == 1 else "g", summed, weights, extra)
        values.update({name: float(value.detach()) for name, value in d_values.items()})

        if stop >= length:
            self._clip, self._previous, self._chunk_start = None, None, 0
        else:
            self._chunk_start = stop
            self._previous = None if self.stage == 1 else (previous[0].detach(), previous[1])
        return values

    # -- inference ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        was_training = self.generator.training
        self.generator.eval()
        try:
            with torch.inference_mode(), self._autocast():
                yield
        finally:
            self.generator.train(was_training)

    def generate(self, batch: dict[str, Any]) -> torch.Tensor:
        """Images in [-1, 1] (B, 3, H, W, on the CPU) for a collated batch of pair samples."""
        return self.generate_with_plan(batch)[0]

    def generate_with_plan(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Like :meth:`generate`, plus the warper's plan (flows, masks) on the CPU, for the report."""
        with self._evaluating():
            fake, plan = self.generator(self._pair_inputs(self._to_device(batch)))
        return fake.float().cpu(), _to_cpu(plan)

    def _generate_for_curve(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Generated images and plan of a curve batch (bench.curves): a pair batch or one clip."""
        if self.video:
            return self.generate_video(batch["frames"], batch["structures"], ground_truth=video_ground_truth(batch))
        return self.generate_with_plan(batch)

    def generate_video(
        self,
        frames: torch.Tensor,
        structures: torch.Tensor,
        ground_truth: dict[str, torch.Tensor] | None = None,
        on_plan: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Animate a whole video (T, 3, H, W) + (T, S, H, W): reference = frame 0, previous = the
        previously generated frame (the reference for frame 0); returns (T, 3, H, W) in [-1, 1] and
        the warper's plan of the last frame on the CPU (sources: previous, reference), for the report.

        ``ground_truth``: the video's ``flows_gt`` / ``visibility_gt`` where it has them (for oracles);
        ``on_plan(t, plan)`` sees every frame's plan on the CPU (transport metrics)."""
        if frames.dim() != 4 or structures.dim() != 4 or frames.shape[0] != structures.shape[0]:
            raise ValueError(
                f"expected frames (T, 3, H, W) and structures (T, S, H, W), got "
                f"{tuple(frames.shape)} and {tuple(structures.shape)}"
            )
        frames, structures = frames.to(self.device), structures.to(self.device)
        # only an oracle reads it: the others' videos are not copied to the device for nothing
        ground_truth = self._to_device(ground_truth) if ground_truth and self.reads_truth else None
        reference, reference_structure = frames[:1], structures[:1]
        previous, previous_structure = reference, reference_structure
        outputs = []
        with self._evaluating():
            for t in range(frames.shape[0]):
                truth = TransportTruth.of_frame(ground_truth, t) if ground_truth else None
                inputs = WarpInputs(
                    [previous, reference], [previous_structure, reference_structure], structures[t : t + 1],
                    ground_truth=truth,
                )
                fake, plan = self.generator(inputs)
                outputs.append(fake.float().cpu())
                if on_plan is not None:
                    on_plan(t, _to_cpu(plan))
                previous, previous_structure = fake, structures[t : t + 1]
        return torch.cat(outputs), _to_cpu(plan)

    # -- checkpoint state ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly after the last completed step."""
        clip = None
        if self._clip is not None:
            clip = {
                "chunk_start": self._chunk_start,
                "previous": None if self._previous is None else [t.cpu() for t in self._previous],
            }
        return {
            "warper": self.warper_name,
            "seed": self.seed,
            "stage": self.stage,
            "step": self.step,
            "data": {"epoch": self.epoch, "batches_taken": self.batches_taken, "clip": clip},
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "video_discriminator": None if self.video_discriminator is None else self.video_discriminator.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            "vgg": self.vgg.describe(),
            "curve": None if self.curve is None else self.curve.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; training then continues exactly where it stopped."""
        if state.get("warper") != self.warper_name:
            raise ValueError(
                f"checkpoint is for warper {state.get('warper')!r}, this trainer trains {self.warper_name!r}"
            )
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.video_discriminator is not None:
            if state.get("video_discriminator") is None:
                raise ValueError("checkpoint lacks the video discriminator this face-animation trainer uses")
            self.video_discriminator.load_state_dict(state["video_discriminator"])
        missing = set(self.optimizers) - set(state["optimizers"])
        if missing:
            raise ValueError(f"checkpoint lacks optimiser state for {sorted(missing)}")
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.stage, self.step = state["stage"], state["step"]
        data = state["data"]
        self.epoch, self.batches_taken = data["epoch"], data["batches_taken"]
        self._iterator, self._clip, self._previous, self._chunk_start = None, None, None, 0
        if data["clip"] is not None:  # re-read the clip in progress and continue inside it
            self.batches_taken -= 1
            self._clip = self._to_device(self._next_batch())
            self._chunk_start = data["clip"]["chunk_start"]
            if data["clip"]["previous"] is not None:
                self._previous = tuple(t.to(self.device) for t in data["clip"]["previous"])
        if self.curve is not None and state.get("curve") is not None:  # older checkpoints have none
            self.curve.load_state_dict(state["curve"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
