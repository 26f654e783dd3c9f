from devices.chamber.controllers import Binder as Binder
from devices.chamber.controllers import BinderMB2 as BinderMB2
from devices.chamber.controllers import Eurotherm as Eurotherm
from devices.chamber.controllers import ModbusTemperatureController as ModbusTemperatureController
from devices.chamber.controllers import WatlowF4T as WatlowF4T
from devices.chamber.controllers import make_controller as make_controller
from devices.chamber.device import TemperatureChamber as TemperatureChamber
