"""The interface between the input pipeline and the training loop."""

import abc
from collections.abc import Iterator


class InputPipeline(abc.ABC):
    """Training batches by step and exact evaluation batches, shaped for a pmapped step.

    Every batch has a leading device axis D = len(devices) and b = global batch //
    (process_count * D) examples per device; on a multi-host run each host gets its slice of the
    global batch (host p takes examples [p * D * b, (p + 1) * D * b)).

    Attributes:
      num_classes: number of label classes.
      image_shape: (H, W, C) of a training image as the model sees it.
      num_train_examples: size of the training split (all hosts).
      num_eval_examples: size of the evaluation split (all hosts).
      steps_per_epoch: num_train_examples // global batch; the remainder of each epoch's
        shuffled order is dropped.
      eval_names: the evaluations `eval_batches` offers, e.g. ('test',) or ('test_224',
        'test_320').
      description: where the data came from, for the training log.
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    num_train_examples: int
    num_eval_examples: int
    steps_per_epoch: int
    eval_names: tuple[str, ...]
    description: str

    @abc.abstractmethod
    def train_batch(self, step: int) -> dict:
        """The training batch of `step`, a pure function of (config.seed, step).

        Returns {'image': float32 [D, b, H, W, C] normalized and augmented, 'label': int32
        [D, b]}. Epoch e = step // steps_per_epoch visits the examples in an order drawn from
        (seed, e).
        """

    @abc.abstractmethod
    def eval_batches(self, name: str | None = None) -> Iterator[dict]:
        """This host's share of evaluation `name` (default: the first of eval_names).

        Yields {'image': float32 [D, b, ...], 'label': int32 [D, b], 'mask': float32 [D, b]};
        mask is 1.0 for real examples and 0.0 for the padding of the last batch, so that over
        all hosts every example is counted exactly once.
        """

    def close(self) -> None:
        """Releases worker threads, if any."""
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
