"""``generate_with_interventions``: sample from a model while units are ablated, clamped, scaled or patched.

Steering a model is the causal test that reads most plainly: clamp the quote cell to its value inside a quotation and
the model writes more quotation marks. The network samples (:meth:`~lstm_interp.CharLSTM.generate`); this module
gives it a ``step`` that runs each piece of input under the interventions
(:func:`~lstm_interp.interventions.run_with_interventions.intervened_forward`), so the network itself knows nothing
of interventions and the two stages import in one direction.
"""

from __future__ import annotations

from collections.abc import Sequence

from lstm_interp.interventions.intervention import Intervention, intervention_list
from lstm_interp.interventions.run_with_interventions import intervened_forward
from lstm_interp.models.char_lstm import CharLSTM


def generate_with_interventions(
    model: CharLSTM,
    prompt: str,
    length: int,
    interventions: Sequence[Intervention] | Intervention | None,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    include_prompt: bool = True,
) -> str:
    """Sample ``length`` characters after ``prompt`` with ``interventions`` acting: :meth:`CharLSTM.generate`'s
    text, the same seed giving the same characters as without them wherever they change nothing.

    Args:
        model: the network.
        prompt: text to condition on (non-empty, inside the vocabulary).
        length: characters to sample.
        interventions: :class:`~lstm_interp.interventions.Ablate`/``Clamp``/``Scale``/``Patch`` objects (or one),
            exactly as :func:`~lstm_interp.interventions.run_with_interventions` takes them; their steps count from
            the prompt's first character (``steps=slice(len(prompt), None)`` acts on the sampled text only).
            ``None`` or ``[]``: plain sampling.
        temperature, top_k, seed, include_prompt: as :meth:`CharLSTM.generate` takes them.

    Raises:
        InterventionError: an intervention the model cannot take (a unit or layer it lacks, a clamp outside a
            gate's range, ...), checked before sampling; or a run driven out of float32's range.
        TypeError: ``interventions`` that are not interventions (the message names what it got).
        VocabularyError | ValueError | TypeError: the sampling arguments, as :meth:`CharLSTM.generate` checks them.

    Example::

        >>> quote_on = Clamp("layers.1.cell", [254], 2.5, steps=slice(4, None))  # doctest: +SKIP
        >>> generate_with_interventions(model, "The ", 300, [quote_on], seed=0)  # doctest: +SKIP
    """
    if not isinstance(model, CharLSTM):
        raise TypeError(f"`model` must be a CharLSTM, got {type(model).__name__}")
    acting = intervention_list(interventions)  # one intervention alone is a list of one
    # The network's own checks of the sampling arguments, at the call (a stream not iterated draws nothing).
    model.generate_stream(prompt, length, temperature=temperature, top_k=top_k, seed=seed)
    # Built, and every intervention checked against the model, before the first character is drawn.
    step = intervened_forward(model, acting, len(prompt) + int(length)) if acting else None
    return model.generate(
        prompt, length, temperature=temperature, top_k=top_k, seed=seed, include_prompt=include_prompt, step=step
    )
