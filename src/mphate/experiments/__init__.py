"""The paper's experiments: method comparison (Table 1), generalisation, continual learning."""
