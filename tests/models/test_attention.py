"""Query-image attention: golden init_occ attention, the reuse split against the official formulation."""

import pytest
import torch

from im2hands.official.image_encoder import sub_state_dict
from im2hands.models.attention import ImageAttention, SelfAttn


def _official_first_position(attn: SelfAttn, queries, context):
    """Slow reference: the official img_attn — one sequence [query, context...] per query, full SelfAttn."""
    b, n, d = queries.shape
    seq = torch.cat([queries.reshape(b * n, 1, d), context.repeat_interleave(n, dim=0)], dim=1)
    return attn(seq)[:, 0].reshape(b, n, d)


@pytest.mark.parametrize("side,prefix", [("left", "img_ex_left."), ("right", "img_ex_right.")])
def test_golden_init_occ_attention(golden, side, prefix):
    m = ImageAttention(img_size=64, img_dim=32, grid_size=4, grid_dim=32, query_dim=19, n_heads=2)
    m.load_state_dict(sub_state_dict(golden.state_dict("init_occ"), prefix))
    m.eval()
    g = golden["init_occ"]
    img_feat = torch.from_numpy(g["img_feat"])
    queries = torch.from_numpy(g[f"query_token_{side}"])
    with torch.no_grad():
        ctx = m.prepare(img_feat)
        out = m.attend(ctx, queries)
        chunks = torch.cat([m.attend(ctx, c) for c in queries.split(300, dim=1)], dim=1)
    torch.testing.assert_close(ctx.tokens, torch.from_numpy(g[f"grid_tokens_{side}"]), atol=5e-6, rtol=0)
    torch.testing.assert_close(out, torch.from_numpy(g[f"local_img_feat_{side}"]), atol=5e-6, rtol=0)
    torch.testing.assert_close(chunks, out, atol=1e-6, rtol=0)


@pytest.mark.parametrize("b,n,t,d,heads", [(1, 5, 16, 19, 2), (2, 7, 64, 82, 4), (3, 1, 4, 8, 1)])
def test_first_position_equals_official_full_sequence(b, n, t, d, heads):
    torch.manual_seed(b * 100 + n)
    attn = SelfAttn(d, n_heads=heads).double().eval()
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.5)
    queries = torch.randn(b, n, d, dtype=torch.float64)
    context = torch.randn(b, t, d, dtype=torch.float64)
    k, v = attn.keys_values(context)
    fast = attn.first_position(queries, k, v)
    torch.testing.assert_close(fast, _official_first_position(attn, queries, context), atol=1e-12, rtol=0)


def test_gradients_flow_through_the_split():
    torch.manual_seed(0)
    m = ImageAttention(img_size=4, img_dim=2, grid_size=2, grid_dim=4, query_dim=6, n_heads=2).double().eval()
    img = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    q = torch.randn(1, 2, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (img, q))


def test_bad_inputs_raise_clear_errors():
    m = ImageAttention(img_size=8, img_dim=3, grid_size=2, grid_dim=4, query_dim=6, n_heads=2)
    with pytest.raises(ValueError, match=r"img_feat: expected shape \(B, 3, 8, 8\)"):
        m.prepare(torch.zeros(1, 3, 16, 16))
    ctx = m.prepare(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"queries: expected shape \(B, N, 6\)"):
        m.attend(ctx, torch.zeros(2, 5, 7))
    with pytest.raises(ValueError, match="mismatched batch size"):
        m.attend(ctx, torch.zeros(3, 5, 6))
    with pytest.raises(ValueError, match="grid_size: must divide"):
        ImageAttention(img_size=8, img_dim=3, grid_size=3, grid_dim=4, query_dim=6, n_heads=2)
