"""The applications built on the library: what a learner runs outside a notebook.

* :mod:`.cli` — ``python -m mnistlib`` (``data import``, ``train``, ``evaluate``, ``predict``, ``export``);
* :mod:`.export_command` — the ``export`` subcommand (ONNX, int8 and the in-browser page);
* :mod:`.webapp` — ``python -m mnistlib.apps.webapp`` / ``make app``: starts the Streamlit drawing app,
  whose page is :mod:`.streamlit_app`;
* :mod:`.webpage` — the static page that runs an exported model in any browser (onnxruntime-web).

Apps import the core and lesson 08's handwriting, never the course machinery.
"""
