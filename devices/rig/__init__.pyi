from devices.rig.device import StackPressureRig as StackPressureRig
from devices.rig.protocol import RigBackend as RigBackend
from devices.rig.protocol import RigController as RigController
