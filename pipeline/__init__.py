"""Everything around the model: decoding, sampling, extraction, the feature store, episodes, training and evaluation."""
