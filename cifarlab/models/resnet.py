"""Residual networks for 32x32 images: the Keras example ResNet v1 (ResNet-20) and Myrtle's ResNet-9."""

from __future__ import annotations

import keras
from keras import layers
from omegaconf import DictConfig

from cifarlab.errors import ConfigError
from cifarlab.models import MODELS
from cifarlab.models.blocks import classifier, scaled_input


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


def conv_bn_relu(x, filters: int, activation: str, weight_decay: float, name: str):
    """3x3 conv without bias, BatchNorm, activation: ResNet-9's only conv unit."""
    x = layers.Conv2D(
        filters, 3, padding="same", use_bias=False, kernel_regularizer=_l2(weight_decay), name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation(activation, name=f"{name}_act")(x)


def residual(x, filters: int, activation: str, weight_decay: float, name: str):
    """x + two conv units (identity shortcut)."""
    y = conv_bn_relu(x, filters, activation, weight_decay, f"{name}_res1")
    y = conv_bn_relu(y, filters, activation, weight_decay, f"{name}_res2")
    return layers.Add(name=f"{name}_add")([x, y])


@MODELS.register("resnet9")
def build_resnet9(cfg: DictConfig, input_shape: tuple, num_classes: int) -> keras.Model:
    """Myrtle/DAWNBench ResNet-9: prep 64; 128 pool +res; 256 pool; 512 pool +res; global max pool."""
    wd, act = float(cfg.get("weight_decay", 0.0)), cfg.activation
    c64, c128, c256, c512 = (_channels(c, cfg.width) for c in (64, 128, 256, 512))
    inputs, x = scaled_input(input_shape)
    x = conv_bn_relu(x, c64, act, wd, "prep")
    x = conv_bn_relu(x, c128, act, wd, "layer1")
    x = layers.MaxPooling2D(2, name="layer1_pool")(x)
    x = residual(x, c128, act, wd, "layer1")
    x = conv_bn_relu(x, c256, act, wd, "layer2")
    x = layers.MaxPooling2D(2, name="layer2_pool")(x)
    x = conv_bn_relu(x, c512, act, wd, "layer3")
    x = layers.MaxPooling2D(2, name="layer3_pool")(x)
    x = residual(x, c512, act, wd, "layer3")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    if cfg.get("dropout", 0.0):
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    # Myrtle scales the logits by 0.125; scaling the features before the Dense is the same at zero bias.
    x = layers.Rescaling(float(cfg.get("logit_scale", 1.0)), name="logit_scale")(x)
    return keras.Model(inputs, classifier(x, num_classes), name=cfg.name)
