"""Tiny random models built offline for the tests: a byte-level BPE tokenizer and small
Llama, Qwen2 and GPT-2 shaped models from ``AutoModelForCausalLM.from_config`` (the families every
test runs on), plus Gemma2 and Mistral ones (``MORE_FAMILIES``: norms placed around each update,
logit soft-caps, sliding windows) for the checks that the parts of each block add up."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "Once upon a time, there was a small town by the sea.",
    "The quick brown fox jumps over the lazy dog.",
    "Natalia sold clips to 48 of her friends in April.",
    "Café, naïve, über: UTF-8 bytes split across tokens — ✓ 日本語",
    "def main():\n    return [1, 2, 3]\n",
] * 4

FAMILIES = ("llama", "qwen2", "gpt2")
MORE_FAMILIES = ("gemma2", "mistral")


def make_tokenizer():
    """A byte-level BPE tokenizer (about 300 tokens) wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|bos|>", "<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>")


def make_config(family: str, vocab_size: int, n_layers: int = 3):
    """A small config of the given family (4 heads, grouped-query attention where it has it)."""
    from transformers import Gemma2Config, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    common = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=1)
    if family == "llama":
        return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=n_layers,
                           num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=256, **common)
    if family == "qwen2":
        return Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=n_layers,
                           num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=256, tie_word_embeddings=True, **common)
    if family == "gpt2":
        return GPT2Config(n_embd=64, n_layer=n_layers, n_head=4, n_positions=256, **common)
    if family == "gemma2":  # post-attention / post-feedforward norms, soft-capped attention and logits
        return Gemma2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=n_layers,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                            max_position_embeddings=256, sliding_window=8, query_pre_attn_scalar=16,
                            attn_logit_softcapping=50.0, final_logit_softcapping=30.0, **common)
    if family == "mistral":
        return MistralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=n_layers,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             sliding_window=None, **common)
    raise ValueError(family)


def make_model(family: str, tokenizer=None, seed: int = 0):
    """A random model of ``family`` sized to the tiny tokenizer, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer or make_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(family, len(tokenizer)))
    with torch.no_grad():  # sharper than the default init, so distributions are not flat
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4.0)
    return model.eval()


def save_tiny(folder: Path, family: str) -> Path:
    """Write a tiny model and tokenizer to ``folder`` (a local model folder) and return it."""
    tokenizer = make_tokenizer()
    model = make_model(family, tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
