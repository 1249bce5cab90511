import warnings

warnings.filterwarnings("ignore", category=UserWarning)
