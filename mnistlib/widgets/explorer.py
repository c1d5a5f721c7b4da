"""Lesson 07's interactive viewer: a layer dropdown and an image slider over the feature maps.

The maps come from :func:`mnistlib.explain.capture` and are drawn by :func:`mnistlib.explain.plot_feature_maps`;
this module only adds the widgets around them (it needs a running kernel: a static page shows no slider).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mnistlib.devices import eval_mode, model_device
from mnistlib.explain import as_batch, capture, conv_layers, get_layer, plot_feature_maps, single_image

__all__ = ["FeatureMapExplorer"]


class FeatureMapExplorer:
    """A layer dropdown and an image slider over a set of images; the feature-map grid redraws.

    ``images`` are normalised ``[N, 1, H, W]``, named ``source`` in titles ("validation image 3").
    Display ``explorer.widget``; call ``explorer.show(image)`` to view any other image (e.g. the
    drawing pad's) with the same layer.
    """

    def __init__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        layers: Sequence[str] | None = None,
        layer: str | None = None,
        index: int = 0,
        source: str = "test image",
    ) -> None:
        import ipywidgets as widgets

        self.model, self.source = model, source
        self.images = as_batch(images)
        self.labels = labels
        options = list(layers) if layers is not None else conv_layers(model)
        for name in options:
            get_layer(model, name)
        self.layer = widgets.Dropdown(options=options, value=layer or options[0], description="layer")
        self.index = widgets.IntSlider(
            value=index, min=0, max=len(self.images) - 1, description="image", continuous_update=False
        )
        self.output = widgets.Output()
        self.widget = widgets.VBox([widgets.HBox([self.layer, self.index]), self.output])
        self._custom: torch.Tensor | None = None
        self.layer.observe(lambda _change: self.show(self._custom), names="value")
        self.index.observe(lambda _change: self.show(None), names="value")
        self.last_shape: tuple[int, ...] | None = None

    def current_image(self) -> torch.Tensor:
        """The image on screen: the custom one if set by :meth:`show`, else the slider's."""
        if self._custom is not None:
            return self._custom
        i = self.index.value
        return self.images[i : i + 1]

    def figure(self, image: torch.Tensor | None = None):
        """The feature-map grid for ``image`` (default: the current one) as a Figure."""
        custom = image is not None or self._custom is not None
        x = single_image(image) if image is not None else self.current_image()
        name = self.layer.value
        maps = capture(self.model, x, name)[name]
        self.last_shape = tuple(maps.shape[1:])
        with eval_mode(self.model), torch.no_grad():
            pred = int(self.model(x.to(model_device(self.model))).argmax(1)[0])
        what = "your image" if custom else f"{self.source} {self.index.value}"
        if not custom and self.labels is not None:
            what += f" (label {int(self.labels[self.index.value])})"
        c, h, w = self.last_shape
        title = f"{name}: {c} maps of {h}×{w} for {what}, predicted {pred}"
        return plot_feature_maps(maps, image=x, title=title)

    def show(self, image: torch.Tensor | None = None) -> None:
        """Redraw into the widget's output area; a given ``image`` stays until the slider moves."""
        import matplotlib.pyplot as plt
        from IPython import get_ipython
        from IPython.display import display

        self._custom = None if image is None else single_image(image)
        fig = self.figure()
        try:
            if get_ipython() is not None:  # outside a kernel there is nowhere to draw
                with self.output:
                    self.output.clear_output(wait=True)
                    display(fig)
        finally:
            plt.close(fig)
