"""Attribution maps: what a trained model looks at (Captum), and figures that show them."""
