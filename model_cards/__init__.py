"""The pretrained models of lstm_interp, installed as ``lstm_interp.pretrained``.

This folder is two things at once, with one copy of each file:

* the **Hub repositories** of the pretrained models: ``novel/`` (War and Peace, published as
  ``lstm-interp/char-lstm-war-and-peace``) and ``code/`` (the Linux kernel, ``lstm-interp/char-lstm-linux-kernel``),
  each with ``README.md`` (the model card), ``config.json``, ``vocab.json``, ``model.safetensors`` (float16
  weights), ``results.json`` and ``images/*.png``; ``lstm-interp push model_cards/novel REPO_ID`` publishes one;
* a **package** shipped inside the wheel (``[tool.setuptools.package-dir]`` maps ``lstm_interp.pretrained`` to
  ``model_cards/``, as ``callbacks/`` is mapped to ``lstm_interp.callbacks``), so that
  :func:`lstm_interp.load_pretrained` finds the models with no network at all, through
  ``importlib.resources.files("lstm_interp.pretrained") / "novel"``.

``template.md`` is the Jinja template of the model cards, rendered by :func:`lstm_interp.hub.make_model_card` from a
folder's ``config.json`` and ``results.json``.
"""
