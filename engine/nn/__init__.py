"""The models: their weights and forward passes, nothing about data or training. One Transformer
(``transformer``) and one RVQ (``quantization``) serve them all; ``lm`` is the token LM each of the
three stages declares a layout for; ``sampling`` is how any of them picks a token."""
