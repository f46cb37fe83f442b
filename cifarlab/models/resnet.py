"""Residual networks for 32x32 images: the Keras example ResNet v1 (ResNet-20) and Myrtle's ResNet-9."""

from __future__ import annotations

import keras
from keras import layers
from omegaconf import DictConfig

from cifarlab.errors import ConfigError
from cifarlab.models import MODELS
from cifarlab.models.blocks import classifier, scaled_input
from cifarlab.models.whitening import whitening_stem


def _channels(base: int, width: float) -> int:
    return max(1, round(base * width))


def _l2(weight_decay: float) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(weight_decay) if weight_decay else None


def resnet_layer(
    x,
    filters: int,
    name: str,
    kernel_size: int = 3,
    strides: int = 1,
    activation: str | None = "relu",
    batchnorm: bool = True,
    weight_decay: float = 1e-4,
):
    """Conv (he_normal, L2) then optional BatchNorm and activation: the Keras example's ``resnet_layer``."""
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        kernel_initializer="he_normal",
        kernel_regularizer=_l2(weight_decay),
        name=f"{name}_conv",
    )(x)
    if batchnorm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_act")(x)
    return x


def basic_block(x, filters: int, strides: int, activation: str, weight_decay: float, name: str):
    """Two 3x3 conv layers plus the shortcut (a 1x1 strided projection when the shape changes), then act."""
    y = resnet_layer(
        x, filters, f"{name}_a", strides=strides, activation=activation, weight_decay=weight_decay
    )
    y = resnet_layer(y, filters, f"{name}_b", activation=None, weight_decay=weight_decay)
    if strides != 1 or x.shape[-1] != filters:
        x = resnet_layer(
            x,
            filters,
            f"{name}_proj",
            1,
            strides,
            activation=None,
            batchnorm=False,
            weight_decay=weight_decay,
        )
    x = layers.Add(name=f"{name}_add")([x, y])
    return layers.Activation(activation, name=f"{name}_out")(x)


@MODELS.register("resnet20")
def build_resnet_v1(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    """ResNet v1 of depth 6n+2 (Keras cifar10_resnet example): 3 stages of n basic blocks, 16/32/64 filters."""
    depth = int(cfg.depth)
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError("model.depth", cfg.depth, "use 6n+2 with n >= 1, e.g. 20, 32, 44, 56 or 110")
    blocks_per_stage = (depth - 2) // 6
    wd, act = float(cfg.get("weight_decay", 0.0)), cfg.activation
    inputs, x = scaled_input(input_shape)
    filters = _channels(16, cfg.width)
    x = resnet_layer(x, filters, "stem", activation=act, weight_decay=wd)
    for stage in range(3):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = basic_block(x, filters, strides, act, wd, f"stage{stage + 1}_block{block + 1}")
        filters *= 2
    # The example's AveragePooling2D(8) + Flatten, for any input size.
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if cfg.get("dropout", 0.0):
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    return keras.Model(inputs, classifier(x, num_classes), name=cfg.name)


def _conv(x, filters: int, weight_decay: float, name: str):
    return layers.Conv2D(
        filters, 3, padding="same", use_bias=False, kernel_regularizer=_l2(weight_decay), name=f"{name}_conv"
    )(x)


def _bn_act(x, activation: str, name: str):
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation(activation, name=f"{name}_act")(x)


def conv_bn_relu(x, filters: int, activation: str, weight_decay: float, name: str):
    """3x3 conv without bias, BatchNorm, activation: ResNet-9's only conv unit."""
    return _bn_act(_conv(x, filters, weight_decay, name), activation, name)


def conv_pool(x, filters: int, activation: str, weight_decay: float, name: str, pool_first: bool):
    """A conv unit that halves the image with a 2x2 max pool: after the activation (Myrtle's
    order) or, with ``pool_first``, right after the conv (airbench's order). Max pooling
    commutes with ReLU and with BatchNorm's per-channel scaling where that is positive,
    so the two differ only in the statistics BatchNorm sees; pooling first leaves
    BatchNorm and the activation a quarter of the pixels (a width-0.25 ResNet-9 step
    about 15% faster on a CPU)."""
    x = _conv(x, filters, weight_decay, name)
    pool = layers.MaxPooling2D(2, name=f"{name}_pool")
    if pool_first:
        return _bn_act(pool(x), activation, name)
    return pool(_bn_act(x, activation, name))


def residual(x, filters: int, activation: str, weight_decay: float, name: str):
    """x + two conv units (identity shortcut)."""
    y = conv_bn_relu(x, filters, activation, weight_decay, f"{name}_res1")
    y = conv_bn_relu(y, filters, activation, weight_decay, f"{name}_res2")
    return layers.Add(name=f"{name}_add")([x, y])


def _resnet9_channels(cfg: DictConfig) -> list[int]:
    """prep, layer1, layer2, layer3 channels: ``model.channels`` as given, else 64/128/256/512 x width."""
    channels = cfg.get("channels")
    if channels is None:
        return [_channels(c, cfg.width) for c in (64, 128, 256, 512)]
    if len(channels) != 4 or not all(isinstance(c, int) and c > 0 for c in channels):
        fix = "give four positive channel counts (prep, layer1, layer2, layer3)"
        raise ConfigError("model.channels", list(channels), fix)
    return list(channels)


RESNET9_LAYERS = ("layer1", "layer2", "layer3")


def _residual_layers(cfg: DictConfig) -> set[str]:
    """``model.residuals``: the layers followed by a residual block (Myrtle's: layer1 and layer3)."""
    value = cfg.get("residuals", ["layer1", "layer3"])
    chosen = [value] if isinstance(value, str) else list(value or [])  # one name, or null for none
    if not set(chosen) <= set(RESNET9_LAYERS):
        raise ConfigError(
            "model.residuals", value, "list some of layer1, layer2, layer3, e.g. [layer1,layer3]"
        )
    return set(chosen)


def _resnet9_stem(x, stem: str, channels: int, act: str, wd: float):
    """``model.stem``: ``conv`` (Myrtle's prep conv unit) or ``whiten`` (a frozen 2x2 patch-whitening conv)."""
    if stem == "conv":
        return conv_bn_relu(x, channels, act, wd, "prep")
    if stem == "whiten":
        return whitening_stem(x, 2, act)
    raise ConfigError("model.stem", stem, "use conv or whiten")


@MODELS.register("resnet9")
def build_resnet9(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    """Myrtle/DAWNBench ResNet-9: prep 64; 128 pool +res; 256 pool; 512 pool +res; global max pool
    (``model.residuals`` says which layers have the residual block)."""
    wd, act = float(cfg.get("weight_decay", 0.0)), cfg.activation
    c64, c128, c256, c512 = _resnet9_channels(cfg)
    inputs, x = scaled_input(input_shape)
    x = _resnet9_stem(x, cfg.get("stem", "conv"), c64, act, wd)
    pool_first = bool(cfg.get("pool_first", False))
    with_residual = _residual_layers(cfg)
    for layer, filters in zip(RESNET9_LAYERS, (c128, c256, c512)):
        x = conv_pool(x, filters, act, wd, layer, pool_first)
        if layer in with_residual:
            x = residual(x, filters, act, wd, layer)
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    if cfg.get("dropout", 0.0):
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    # Myrtle scales the logits by 0.125; scaling the features before the Dense is the same at zero bias.
    x = layers.Rescaling(float(cfg.get("logit_scale", 1.0)), name="logit_scale")(x)
    return keras.Model(inputs, classifier(x, num_classes), name=cfg.name)
