"""ReSpike networks: ANN backbones, the spiking MS-ResNet, cross-attention fusion, the hybrid."""
