import sys, torch
torch.set_num_threads(1)
from cinerecon.data.simulate import real_cine_to_sample
from cinerecon.masks import MaskSpec, make_mask
from cinerecon import coils
from cinerecon.classical import CLASSICAL
from cinerecon.evaluate.metrics import series_metrics
from cinerecon.data.realistic import load_series
for path in ("../shared/data/real_cine_extra/rat_sax_8fr.npz", "../shared/data/real_cine/subj1_sax_EC.npz"):
    t = min(12, load_series(path).shape[0])
    s = real_cine_to_sample(path, coils=10, snr_db=35.0, seed=0, size=(128, 128), n_frames=t)
    for R in (8, 10):
        m = make_mask(MaskSpec("kt_radial", R, 16), t, 128, seed=0, height=128)
        k = s.kspace * m
        cands = {"true": s.maps, "espirit16": coils.espirit_maps(k, calib_mask=m), "time_avg": coils.maps_from_time_average(k, m)}
        for name, mp in cands.items():
            rec = CLASSICAL["cg_sense"](k[None], m[None], mp[None])
            met = series_metrics(rec[0], s.target, "global", with_haarpsi=False)
            print(path.split("/")[-1], R, name, round(float(met.psnr), 2), round(float(met.ssim), 4), flush=True)
