"""Cloud masking of Sentinel-3 SLSTR L1 RBT products: extraction, HDF conversion, U-Net, SST checks."""

__version__ = "0.1.0"
