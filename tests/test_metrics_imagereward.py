"""ImageReward adapter: a tiny random checkpoint in the published layout (ImageReward.pt keys,
med_config.json, vocab.txt) loaded through the metric's check()/score(), checked against a
hand-written forward of BLIP's ViT (`vit.py`) and text encoder (`med.py`) from the same tensors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from icd_bench.errors import ConfigError
from icd_bench.metrics import imagereward as ir
from icd_bench.metrics.base import MetricSpec, ScoreItem
from icd_bench.metrics.weights import WeightsNotFoundError

import golden_inputs as gi

pytestmark = pytest.mark.usefixtures("one_thread")

# tiny ViT: width 128 (2 heads of 64), 2 blocks, patch 16 at 32 px (2×2 patches + class token)
V_WIDTH, V_DEPTH, V_PATCH, V_IMAGE, V_MLP = 128, 2, 16, 32, 256
# tiny BERT with cross-attention
T_WIDTH, T_DEPTH, T_HEADS, T_INTER, T_POS = 32, 2, 2, 48, 40
WORDS = ["a", "cat", "dog", "red", "blue", "photo", "of", "on", "the", "grass"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]  # + [DEC], [ENC] added by the tokenizer
T_VOCAB = len(VOCAB) + 2
#: med_config.json of THUDM/ImageReward (= BLIP's configs/med_config.json; train/src/config/med_config.json)
PUBLISHED_MED_CONFIG = {
    "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
    "num_hidden_layers": 12, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30524,
    "encoder_width": 768, "add_cross_attention": True}
MED_CONFIG = {  # the published med_config.json, shrunk (encoder_width is overridden by the vision width)
    "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": T_WIDTH, "initializer_range": 0.02,
    "intermediate_size": T_INTER, "layer_norm_eps": 1e-12, "max_position_embeddings": T_POS,
    "model_type": "bert", "num_attention_heads": T_HEADS, "num_hidden_layers": T_DEPTH, "pad_token_id": 0,
    "type_vocab_size": 2, "vocab_size": T_VOCAB, "encoder_width": 768, "add_cross_attention": True}


def published_layout(seed=0, *, v_width=V_WIDTH, v_depth=V_DEPTH, patch=V_PATCH, image=V_IMAGE, v_mlp=V_MLP,
                     t_width=T_WIDTH, t_depth=T_DEPTH, t_inter=T_INTER, t_pos=T_POS, t_vocab=T_VOCAB,
                     device="cpu") -> dict[str, torch.Tensor]:
    """Random tensors under the key names and shapes of ImageReward.pt (golden_inputs.imagereward_layout),
    by default at this module's tiny sizes."""
    return gi.imagereward_layout(seed, v_width=v_width, v_depth=v_depth, patch=patch, image=image,
                                 v_mlp=v_mlp, t_width=t_width, t_depth=t_depth, t_inter=t_inter, t_pos=t_pos,
                                 t_vocab=t_vocab, device=device)


def write_weights(root, sd, med=MED_CONFIG):
    (root / "imagereward-v1").mkdir(parents=True)
    torch.save(sd, root / "imagereward-v1" / "ImageReward.pt")
    (root / "imagereward-v1" / "med_config.json").write_text(json.dumps(med))
    (root / "bert-base-uncased").mkdir()
    (root / "bert-base-uncased" / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return root


@pytest.fixture(scope="module")
def tiny_sd():
    return published_layout()


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory, tiny_sd):
    return write_weights(tmp_path_factory.mktemp("weights"), tiny_sd)


@pytest.fixture
def metric(weights_root, monkeypatch):
    monkeypatch.setenv("ICD_BENCH_WEIGHTS", str(weights_root))
    m = ir.ImageReward(MetricSpec.parse("imagereward"))
    m.check()
    return m


def _image(seed, h=V_IMAGE, w=V_IMAGE):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, h, w, generator=g) * 255).round() / 255  # as read from a PNG


# -- a hand-written forward of the package's modules, from the raw checkpoint tensors ----------
def ref_vit(sd, x, heads):
    """`vit.py` VisionTransformer.forward (timm PatchEmbed, pre-norm blocks, eps 1e-6, final norm)."""
    v = "blip.visual_encoder."
    w = sd[v + "patch_embed.proj.weight"]
    x = F.conv2d(x, w, sd[v + "patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2)
    B, _, D = x.shape
    x = torch.cat([sd[v + "cls_token"].expand(B, -1, -1), x], dim=1)
    x = x + sd[v + "pos_embed"][:, :x.size(1), :]
    N = x.shape[1]
    depth = len({k.split(".")[3] for k in sd if k.startswith(v + "blocks.")})
    for i in range(depth):
        b = f"{v}blocks.{i}."
        h = F.layer_norm(x, (D,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], 1e-6)
        qkv = F.linear(h, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
        q, k, val = qkv.reshape(B, N, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (D // heads) ** -0.5).softmax(dim=-1)
        o = (attn @ val).transpose(1, 2).reshape(B, N, D)
        x = x + F.linear(o, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        h = F.layer_norm(x, (D,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], 1e-6)
        x = x + F.linear(F.gelu(F.linear(h, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])),
                         sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
    return F.layer_norm(x, (D,), sd[v + "norm.weight"], sd[v + "norm.bias"], 1e-6)


def _ref_attention(sd, p, x, ctx, mask_add, heads):
    B, L, D = x.shape
    hd = D // heads

    def split(t):
        return t.view(B, t.shape[1], heads, hd).permute(0, 2, 1, 3)

    q = split(F.linear(x, sd[p + "self.query.weight"], sd[p + "self.query.bias"]))
    k = split(F.linear(ctx, sd[p + "self.key.weight"], sd[p + "self.key.bias"]))
    val = split(F.linear(ctx, sd[p + "self.value.weight"], sd[p + "self.value.bias"]))
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd) + mask_add
    o = (scores.softmax(-1) @ val).permute(0, 2, 1, 3).reshape(B, L, D)
    o = F.linear(o, sd[p + "output.dense.weight"], sd[p + "output.dense.bias"])
    return F.layer_norm(o + x, (D,), sd[p + "output.LayerNorm.weight"],
                        sd[p + "output.LayerNorm.bias"], 1e-12)


def ref_reward(sd, pixels, ids, mask, v_heads=V_WIDTH // 64, t_heads=T_HEADS):
    """`med.py` BertModel(mode='multimodal') over the prompt with cross-attention to the ViT tokens,
    [CLS] → MLP → (r − mean) / std, all by hand (masks as (1 − m) · −10000, as med.py builds them)."""
    image_embeds = ref_vit(sd, pixels, v_heads)
    t = "blip.text_encoder."
    L = ids.shape[1]
    x = sd[t + "embeddings.word_embeddings.weight"][ids] + sd[t + "embeddings.position_embeddings.weight"][:L]
    x = F.layer_norm(x, (x.shape[-1],), sd[t + "embeddings.LayerNorm.weight"],
                     sd[t + "embeddings.LayerNorm.bias"], 1e-12)
    self_mask = (1.0 - mask[:, None, None, :].float()) * -10000.0
    enc_mask = (1.0 - torch.ones(image_embeds.shape[:2])[:, None, None, :]) * -10000.0
    for i in range(T_DEPTH):
        b = f"{t}encoder.layer.{i}."
        x = _ref_attention(sd, b + "attention.", x, x, self_mask, t_heads)
        x = _ref_attention(sd, b + "crossattention.", x, image_embeds, enc_mask, t_heads)
        h = F.gelu(F.linear(x, sd[b + "intermediate.dense.weight"], sd[b + "intermediate.dense.bias"]))
        h = F.linear(h, sd[b + "output.dense.weight"], sd[b + "output.dense.bias"])
        x = F.layer_norm(h + x, (x.shape[-1],), sd[b + "output.LayerNorm.weight"],
                         sd[b + "output.LayerNorm.bias"], 1e-12)
    r = x[:, 0, :]
    for idx in (0, 2, 4, 6, 7):
        r = F.linear(r, sd[f"mlp.layers.{idx}.weight"], sd[f"mlp.layers.{idx}.bias"])
    return ((r - 0.16717362830052426) / 1.0333394966054072).squeeze(-1)


# -- tests ---------------------------------------------------------------------------------------
def test_every_checkpoint_tensor_lands_in_the_model(metric, weights_root, tiny_sd):
    model, _ = ir.load(weights_root / "imagereward-v1", weights_root / "bert-base-uncased")
    cfg = model.visual_encoder.config  # read off the tensors: width, depth, patch, image size, heads
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.patch_size, cfg.image_size, cfg.num_attention_heads,
            cfg.intermediate_size, cfg.layer_norm_eps) == (V_WIDTH, V_DEPTH, V_PATCH, V_IMAGE, 2, V_MLP, 1e-6)
    # encoder_width = vision width, not the json's 768
    assert model.text_encoder.config.encoder_hidden_size == V_WIDTH
    own = {f"vision:{k}": t for k, t in model.visual_encoder.state_dict().items()}
    own |= {f"text:{k}": t for k, t in model.text_encoder.state_dict().items()}
    own |= {f"mlp:{k}": t for k, t in model.mlp.state_dict().items()}
    used = set()
    for key, tensor in tiny_sd.items():
        if key in ir.UNUSED_KEYS:
            continue
        if key.startswith(ir.VISION_PREFIX):
            target = "vision:" + ir.vision_key(key[len(ir.VISION_PREFIX):])
        elif key.startswith(ir.TEXT_PREFIX):
            target = "text:" + key[len(ir.TEXT_PREFIX):]
        else:
            target = "mlp:" + key[len(ir.MLP_PREFIX):]
        assert torch.equal(own[target].cpu(), tensor), key
        used.add(target)
    assert used == set(own)  # nothing in the model left at its initial value, nothing left over
    assert ir.UNUSED_KEYS <= set(tiny_sd)  # the published file's unused entries are accepted


def test_vision_tower_and_score_equal_a_hand_written_blip_forward(metric, weights_root, tiny_sd):
    model, tok = ir.load(weights_root / "imagereward-v1", weights_root / "bert-base-uncased")
    images = [_image(1), _image(2)]
    prompts = ["a red cat on the grass", "photo of a blue dog"]
    pixels = torch.stack([ir.preprocess(x, V_IMAGE) for x in images])
    with torch.inference_mode():
        torch.testing.assert_close(model.image_embeds(pixels),
                                   ref_vit(tiny_sd, pixels, 2), atol=1e-5, rtol=1e-5)
        ids, mask = ir.tokenize(tok, prompts)
        want = ref_reward(tiny_sd, pixels, ids, mask)
        # the score from the loaded modules, spelled out: (mlp(CLS) - mean) / std
        emb = model.image_embeds(pixels)
        ones = torch.ones(emb.shape[:2], dtype=torch.long)
        cls = model.text_encoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=emb,
                                 encoder_attention_mask=ones).last_hidden_state[:, 0]
        direct = ((model.mlp(cls) - 0.16717362830052426) / 1.0333394966054072).squeeze(-1)
    got = [r["imagereward"]
           for r in metric.score([ScoreItem(f"s{i}", output=x, target_prompt=p)
                                  for i, (x, p) in enumerate(zip(images, prompts, strict=True))])]
    torch.testing.assert_close(torch.tensor(got), want.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.tensor(got), direct.float(), atol=1e-6, rtol=1e-6)
    assert want.abs().max() > 1e-3  # not a degenerate all-zero reward


def test_scores_finite_batch_equals_per_sample_and_depend_on_prompt_and_image(metric):
    items = [ScoreItem("a", output=_image(3), target_prompt="a red cat"),
             ScoreItem("b", output=_image(4, 48, 70),
                       target_prompt="a blue dog on the grass"),  # resized + cropped
             ScoreItem("c", output=_image(3), target_prompt="a blue dog on the grass")]
    batch = [r["imagereward"] for r in metric.score(items)]
    single = [metric.score([it])[0]["imagereward"] for it in items]
    assert all(math.isfinite(v) for v in batch)
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-5)
    assert abs(batch[0] - batch[2]) > 1e-4  # same image, other prompt
    assert abs(batch[1] - batch[2]) > 1e-4  # same prompt, other image
    assert metric.higher_is_better and metric.needs == ("target_prompt",)


def test_empty_target_prompt_is_a_per_sample_error(metric):
    with pytest.raises(ValueError, match="empty target prompt"):
        metric.score([ScoreItem("x", output=_image(5), target_prompt="  ")])
    with pytest.raises(ConfigError, match="regions"):
        MetricSpec.parse("imagereward:background")


def test_tokenizer_as_blip_init_tokenizer(metric, weights_root):
    _, tok = ir.load(weights_root / "imagereward-v1", weights_root / "bert-base-uncased")
    # added after the vocabulary, as 30522 / 30523 for bert-base-uncased
    dec, enc = len(VOCAB), len(VOCAB) + 1
    assert tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [dec, enc] and tok.enc_token_id == enc
    assert tok.bos_token == "[DEC]" and len(tok) == T_VOCAB
    ids, mask = ir.tokenize(tok, ["A Red CAT", " ".join(["dog"] * 50)])
    assert ids.shape == mask.shape == (2, ir.MAX_LENGTH)  # padded / truncated to 35
    # ImageReward.score feeds the ids unchanged: [CLS] first (BLIP's ITM swaps in [ENC]; ImageReward does not)
    assert ids[0, :5].tolist() == [VOCAB.index(w) for w in ("[CLS]", "a", "red", "cat", "[SEP]")]
    assert ids[0, 5:].eq(0).all() and mask[0].tolist() == [1] * 5 + [0] * 30
    assert ids[1, 0] == VOCAB.index("[CLS]") and ids[1, -1] == VOCAB.index("[SEP]") and mask[1].all()


def test_preprocess_is_the_package_transform():
    from PIL import Image

    pytest.importorskip("torchvision")  # the package's own transform, as the reference
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    for h, w, size in ((48, 70, 32), (70, 48, 32), (64, 64, 32), (32, 32, 32)):
        x = _image(7, h, w)
        pil = Image.fromarray((x * 255).round().byte().permute(1, 2, 0).numpy(), "RGB")
        want = Compose([Resize(size, interpolation=InterpolationMode.BICUBIC), CenterCrop(size), ToTensor(),
                        Normalize((0.48145466, 0.4578275, 0.40821073),
                                  (0.26862954, 0.26130258, 0.27577711))])(pil)
        torch.testing.assert_close(ir.preprocess(x, size), want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("change", ["extra", "renamed", "missing", "shape"])
def test_a_foreign_checkpoint_layout_is_a_clear_error(tmp_path, monkeypatch, tiny_sd, change):
    sd = dict(tiny_sd)
    key = "blip.visual_encoder.blocks.1.attn.proj.weight"
    if change == "extra":
        sd["blip.itm_head.weight"] = torch.zeros(2, T_WIDTH)
        expect = r"unexpected keys: blip\.itm_head\.weight"
    elif change == "renamed":
        sd["blip.visual_encoder.blocks.1.attn.out.weight"] = sd.pop(key)
        expect = r"unexpected keys: blip\.visual_encoder\.blocks\.1\.attn\.out\.weight"
    elif change == "missing":
        sd.pop("blip.text_encoder.encoder.layer.1.crossattention.self.key.bias")
        expect = r"missing keys: blip\.text_encoder\.encoder\.layer\.1\.crossattention\.self\.key\.bias"
    else:
        sd["mlp.layers.4.weight"] = torch.zeros(64, 129)
        expect = r"shape mismatches: mlp\.layers\.4\.weight \(64, 129\) \(model \(64, 128\)\)"
    monkeypatch.setenv("ICD_BENCH_WEIGHTS", str(write_weights(tmp_path / "w", sd)))
    with pytest.raises(ConfigError, match=expect):
        ir.ImageReward(MetricSpec.parse("imagereward")).check()


def test_an_unknown_text_encoder_key_is_not_silently_dropped(tmp_path, monkeypatch, tiny_sd):
    sd = dict(tiny_sd)
    # a pooler ImageReward never had
    sd["blip.text_encoder.pooler.dense.weight"] = torch.zeros(T_WIDTH, T_WIDTH)
    monkeypatch.setenv("ICD_BENCH_WEIGHTS", str(write_weights(tmp_path / "w", sd)))
    with pytest.raises(ConfigError, match=r"unexpected keys: blip\.text_encoder\.pooler\.dense\.weight"):
        ir.ImageReward(MetricSpec.parse("imagereward")).check()


def test_a_tokenizer_of_another_vocabulary_is_refused(tmp_path, monkeypatch, tiny_sd):
    root = write_weights(tmp_path / "w", tiny_sd)
    (root / "bert-base-uncased" / "vocab.txt").write_text("\n".join([*VOCAB, "zebra"]) + "\n")
    monkeypatch.setenv("ICD_BENCH_WEIGHTS", str(root))
    with pytest.raises(ConfigError, match="not bert-base-uncased's vocab.txt"):
        ir.ImageReward(MetricSpec.parse("imagereward")).check()


def test_missing_weights_fail_in_check_naming_the_variable(tmp_path, monkeypatch, tiny_sd):
    monkeypatch.setenv("ICD_BENCH_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFoundError, match="ICD_BENCH_WEIGHTS") as err:
        ir.ImageReward(MetricSpec.parse("imagereward")).check()
    assert "imagereward-v1" in str(err.value)
    # the checkpoint present but not the tokenizer: still refused before scoring
    root = write_weights(tmp_path / "w", tiny_sd)
    (root / "bert-base-uncased" / "vocab.txt").unlink()
    monkeypatch.setenv("ICD_BENCH_WEIGHTS", str(root))
    with pytest.raises(WeightsNotFoundError, match="bert-base-uncased"):
        ir.ImageReward(MetricSpec.parse("imagereward")).check()


def test_the_published_sizes_give_blip_vit_l_and_map_completely():
    """ImageReward.pt's shapes (on the meta device: no memory, no download): ViT-L/16 at 224 px with
    16 heads, BERT-base with 1024-wide cross-attention, every tensor placed."""
    sd = published_layout(v_width=1024, v_depth=24, patch=16, image=224, v_mlp=4096, t_width=768, t_depth=12,
                          t_inter=3072, t_pos=512, t_vocab=30524, device="meta")
    parts = ir.map_checkpoint(sd)
    v_cfg = ir.vision_config(parts["vision"])
    assert (v_cfg.hidden_size, v_cfg.num_hidden_layers, v_cfg.num_attention_heads, v_cfg.patch_size,
            v_cfg.image_size, v_cfg.intermediate_size) == (1024, 24, 16, 16, 224, 4096)
    t_cfg = ir.text_config(PUBLISHED_MED_CONFIG, v_cfg.hidden_size)
    assert (t_cfg.vocab_size, t_cfg.hidden_size, t_cfg.num_attention_heads,
            t_cfg.encoder_hidden_size) == (30524, 768, 12, 1024)
    with torch.device("meta"):
        model = ir.ImageRewardModel(v_cfg, t_cfg)
    for part, module in (("vision", model.visual_encoder), ("text", model.text_encoder), ("mlp", model.mlp)):
        own = {k: tuple(t.shape) for k, t in module.state_dict().items()}
        assert own == {k: tuple(t.shape) for k, t in parts[part].items()}, part
