// (being written)
#include "agent_fixture.hpp"
