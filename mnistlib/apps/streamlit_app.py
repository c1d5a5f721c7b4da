"""The drawing web app (Streamlit): draw a digit or upload a picture of one, and see what the model reads.

Run it with ``make app`` or ``python -m mnistlib.apps.webapp [--checkpoint PATH]`` (see :mod:`mnistlib.apps.webapp`,
which holds everything this page computes). Streamlit re-runs this script from the top after every
stroke, click or upload.
"""

from __future__ import annotations

import sys

import streamlit as st

from mnistlib.apps import webapp
from mnistlib.drawing import DrawingError, Prediction

CANVAS = 280  #: canvas size in pixels, the same as lesson 05's pad
BRUSH = 20


@st.cache_resource(show_spinner="Loading the model…")
def _model(path: str, mtime: float) -> webapp.ServedModel:
    """Loaded once per file (and again when the file changes)."""
    return webapp.load_app_model(path)


def _show(prediction: Prediction | None) -> None:
    """The headline, the ten probabilities and the 28×28 image the model saw."""
    digit = "" if prediction is None else str(prediction.digit)
    st.markdown(f'<div class="mnist-app-prediction" data-digit="{digit}" style="font-size:1.6rem">'
                f"{webapp.describe(prediction)}</div>", unsafe_allow_html=True)
    if prediction is None:
        return
    chart, seen = st.columns([3, 1])
    with chart:
        st.bar_chart(webapp.probability_rows(prediction), x="digit", y="probability", height=220,
                     x_label="digit", y_label="probability")
    with seen:
        st.image(webapp.image28_png(prediction.image28), caption="what the model sees (28×28)", width=140)


def _drawing(loaded: webapp.ServedModel) -> None:
    from streamlit_drawable_canvas import st_canvas  # imported here: it only loads inside a running server

    st.session_state.setdefault("canvas", 0)
    draw, result = st.columns([1, 2])
    with draw:
        canvas = st_canvas(stroke_width=BRUSH, stroke_color="#000000", background_color="#ffffff",
                           height=CANVAS, width=CANVAS, drawing_mode="freedraw", return_image_data=True,
                           key=f"canvas-{st.session_state.canvas}")
        if st.button("Clear", key="clear"):
            st.session_state.canvas += 1  # a new key is a new, empty canvas
            st.rerun()
    with result, st.container(key="drawing-result"):
        _show(webapp.canvas_prediction(canvas.image_data, loaded))


def _upload(loaded: webapp.ServedModel) -> None:
    file = st.file_uploader("…or upload a picture of a digit (PNG, JPEG…; dark ink on light paper or light on dark)",
                            key="upload")
    if file is None:
        return
    with st.container(key="upload-result"):
        try:
            _show(webapp.upload_prediction(file.getvalue(), file.name, loaded))
        except DrawingError as exc:
            st.error(str(exc), icon="⚠️")  # the same message as `python -m mnistlib predict`


def main() -> None:
    st.set_page_config(page_title="Draw a digit", page_icon="✏️", layout="wide")
    st.title("Draw a digit")
    try:
        path = webapp.model_path(webapp.app_args(sys.argv[1:]).checkpoint)
        loaded = _model(str(path), path.stat().st_mtime)
    except webapp.AppModelError as exc:
        st.warning(str(exc), icon="ℹ️")
        st.stop()
    st.caption(f"Using {loaded.description}. Your drawing is cropped, scaled to 20 px and centred in 28×28 "
               "like an MNIST digit before the model reads it.")
    _drawing(loaded)
    _upload(loaded)


if __name__ == "__main__":  # how Streamlit runs this script; importing it starts nothing
    main()
