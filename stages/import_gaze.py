"""DVC stage `import_gaze`: parse params.yaml, run gazelib.gaze.importers.run_import on the `import` group."""
from gazelib.gaze.importers import run_import
from gazelib.core.params import load_params, setup_logging


def main() -> None:
    setup_logging()
    cfg = dict(load_params()["import"])
    out = cfg.pop("out")
    cfg.pop("raw")  # the folder DVC tracks for this stage; the files to read are in `inputs`
    run_import(cfg=cfg, out_dir=out)


if __name__ == "__main__":
    main()
