import sys, torch
torch.set_num_threads(1)
import cinerecon.models.unrolled as U
from cinerecon.data.simulate import real_cine_to_sample
from cinerecon.data.realistic import load_series
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.classical import CLASSICAL
from cinerecon.evaluate.metrics import series_metrics
from cinerecon.train.checkpoints import load_model
from cinerecon.models import load_pretrained
orig = U.calibrated_items
for path, ckname in (("../shared/data/real_cine/subj1_sax_EC.npz", "F2"), ("../shared/data/real_cine_extra/rat_sax_8fr.npz", "shipped"), ("../shared/data/real_cine/subj1_sax_EC.npz", "shipped")):
    model = load_model("docs/crunet_real_training/long_ft/F2.pt", "cpu")[0].eval() if ckname == "F2" else load_pretrained("crunet")
    t = min(12, load_series(path).shape[0])
    s = real_cine_to_sample(path, coils=10, snr_db=35.0, seed=0, size=(128, 128), n_frames=t)
    for R in (8, 10):
        m = make_mask(MaskSpec("kt_radial", R, 16), t, 128, seed=7, height=128)
        kb, mb, sb = (s.kspace * m)[None], m[None], s.maps[None]
        ls = series_metrics(CLASSICAL["lplus_s"](kb, mb, sb)[0], s.target, "global", with_haarpsi=False)
        res = {}
        for route in ("default", "as_calibrated"):
            U.calibrated_items = orig if route == "default" else (lambda mask, k: [True] * k.shape[0])
            with torch.no_grad():
                r = model(kb, mb, sb)
            res[route] = float(series_metrics(r[0], s.target, "global", with_haarpsi=False).psnr)
        U.calibrated_items = orig
        print(path.split("/")[-1], ckname, R, "L+S", round(float(ls.psnr), 2), {k: round(v, 2) for k, v in res.items()}, flush=True)
