"""franky-sim (a MuJoCo FR3 behind the real libfranka protocol) plus two things a real arm does
that the simulator does not: reflexes and an estimated external wrench. The robot tests need both
to exercise FrankaEnv's error recovery and force stop through libfranka exactly as on hardware.
Started by the `franky_sim` fixture (tests/conftest.py); by hand:

    python tests/franky_sim_server.py      prints "Connect to the server using 'IP' ..." when ready

Commands, one per line on stdin, each acknowledged with "ok <command>" on stdout (the end of stdin,
e.g. a test session that was killed, stops the server):
    reflex                          abort the running motion the way the arm's cartesian reflex does:
                                    Move reply kReflexAborted, then robot mode Reflex with the
                                    cartesian_reflex error flag until automatic error recovery;
                                    Move commands are rejected meanwhile, as on the real arm
    wrench fx fy fz tx ty tz        report this external wrench (O_F_ext_hat_K, N and Nm, base frame)
                                    from the next state packet on (the simulator reports zeros)

Everything else is franky-sim 1.0.4 unchanged: its Move and error-recovery handlers are replaced
through the module globals FrankaRobotServer.__init__ reads, the robot server through the name
SimulationServer.init uses.
"""
from __future__ import annotations

import sys
import threading

import franky_sim
from franky_sim import franka_robot_server, simulation_server
from franky_sim.franka_robot_protocol import (
    AutomaticErrorRecoveryCommand,
    BaseCommand,
    MoveCommand,
    MoveStatus,
    RobotCommand,
    RobotMode,
)
from franky_sim.mujoco_simulator import MujocoSimulator

CARTESIAN_REFLEX = 7  # index of cartesian_reflex among libfranka's 41 error flags (franka/errors.h)
REFLEX_FLAGS = tuple(i == CARTESIAN_REFLEX for i in range(41))


class RejectingMoveCommand(MoveCommand):
    """A Move while the arm is in a reflex is rejected, as the real controller does."""

    def handle(self, server):
        if server.in_reflex:
            self.reply(MoveStatus.kCommandNotPossibleRejected)
        else:
            super().handle(server)


class ClearingRecoveryCommand(AutomaticErrorRecoveryCommand):
    def handle(self, server):
        server.in_reflex = False
        super().handle(server)


class FaultInjectingRobotServer(franka_robot_server.FrankaRobotServer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reflex_requested = False
        self.in_reflex = False
        self.wrench = (0.0,) * 6

    def _post_process_commands(self):
        if self.reflex_requested:
            self.reflex_requested = False
            self.in_reflex = True
            motion_id = self.current_motion_id
            self.stop_motion(send_preemption_signal=False)
            if motion_id:
                BaseCommand.send_response(self._tcp_socket, RobotCommand.kMove, motion_id, MoveStatus.kReflexAborted)
                self.reset_current_motion_id()
        super()._post_process_commands()

    @property
    def robot_state(self):
        state = super().robot_state.replace(O_F_ext_hat_K=self.wrench, K_F_ext_hat_K=self.wrench)
        if self.in_reflex:
            state = state.replace(robot_mode=RobotMode.kReflex, errors=REFLEX_FLAGS, reflex_reason=REFLEX_FLAGS)
        return state


def read_commands(server: FaultInjectingRobotServer, simulation: franky_sim.SimulationServer) -> None:
    """Applies the commands on stdin; its end (the test session is over, or died) stops the server."""
    for line in sys.stdin:
        words = line.split()
        if words == ["reflex"]:
            server.reflex_requested = True
        elif len(words) == 7 and words[0] == "wrench":
            server.wrench = tuple(float(w) for w in words[1:])
        else:
            print(f"error: unknown command {line.strip()!r}", flush=True)
            continue
        print(f"ok {line.strip()}", flush=True)
    simulation.running = False


def main() -> None:
    franka_robot_server.MoveCommand = RejectingMoveCommand
    franka_robot_server.AutomaticErrorRecoveryCommand = ClearingRecoveryCommand
    simulation_server.FrankaRobotServer = FaultInjectingRobotServer
    with MujocoSimulator() as sim:
        robot = sim.add_robot()
        with franky_sim.SimulationServer(sim) as server:
            threading.Thread(target=read_commands, args=(server.robot_servers[0], server), daemon=True).start()
            print(f"Connect to the server using '{robot.hostname}' as the robot IP address", flush=True)
            server.run_forever()


if __name__ == "__main__":
    main()
