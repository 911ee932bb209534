"""Layers shared by the networks of :mod:`motionflow.models`, one concept per module.

==========================  ==================================================================
module                      what it holds
==========================  ==================================================================
``raft_extractor``          RAFT's ``ResidualBlock`` / ``BasicEncoder`` (feature + context encoders)
``raft_update``             RAFT's motion encoder, separable ConvGRU, flow head, ``BasicUpdateBlock``
``twins``                   Twins-SVT encoder stages (VideoFlow, StreamFlow)
``gma``, ``sk*``            GMA global motion aggregation, SKFlow large-kernel blocks
==========================  ==================================================================

Nothing is imported here: import the module you need (``from motionflow.models.blocks.raft_update
import BasicUpdateBlock``).
"""
