import torch
torch.set_num_threads(1)
from cinerecon.data.simulate import real_cine_to_sample
from cinerecon.data.realistic import load_series
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.classical.lowrank_sparse import lplus_s, LplusSParams
from cinerecon.evaluate.metrics import series_metrics
print(LplusSParams())
for path in ("../shared/data/real_cine/subj1_sax_EC.npz", "../shared/data/real_cine_extra/rat_sax_8fr.npz"):
    t = min(12, load_series(path).shape[0])
    s = real_cine_to_sample(path, coils=10, snr_db=35.0, seed=0, size=(128, 128), n_frames=t)
    for R in (8, 10):
        m = make_mask(MaskSpec("kt_radial", R, 16), t, 128, seed=7, height=128)
        kb, mb, sb = (s.kspace * m)[None], m[None], s.maps[None]
        out = {}
        for name, kw in (("default", {}), ("lam_l=0.03", {"lam_l": 0.03}), ("lam_l=0.03 zf", {"lam_l": 0.03, "start": "zero_filled"}), ("lam_l=0.01", {"lam_l": 0.01})):
            out[name] = round(float(series_metrics(lplus_s(kb, mb, sb, **kw)[0], s.target, "global", with_haarpsi=False).psnr), 2)
        print(path.split("/")[-1], R, out, flush=True)
