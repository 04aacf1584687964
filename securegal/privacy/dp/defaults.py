"""The DP mechanisms' default clips and ridge settings, in one place: the plan's FeatureDP and
LabelDP, the trainers' configs and the DP ridge read them (docs/privacy.md sections 2 and 8 say
where they come from). No numpy here: the command line reads the plan for its help."""

RESIDUAL_CLIP = 1.0      # C: residual rows clipped to this L2 norm (feature-DP stat, label-DP, DP-GD)
PREDICTION_CLIP = 0.01   # C_f: per-row train predictions (the pred release) clipped to this norm
LAM = 1e-3               # the ridge floor's lam * n
NOISE_RIDGE = 1.0        # ... plus noise_ridge * sigma_G * sqrt(p)
INTERCEPT = 0.1          # c: the constant column of the row map
