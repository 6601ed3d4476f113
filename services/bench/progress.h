// A one-line progress bar on stderr, drawn only when stderr is a terminal (scripts and CI logs get
// nothing). Thread-safe: drivers' threads call done() as requests end.
#pragma once

#include <mutex>
#include <string>

#include "services/bench/driver.h"

namespace dg::bench {

class Progress {
public:
    Progress(int total, bool enabled);
    ~Progress();
    void set_label(std::string label);
    void done(bool ok);

private:
    void draw_locked(bool force);
    std::mutex mu_;
    int total_, done_ = 0, failed_ = 0;
    bool enabled_;
    std::string label_;
    Clock::time_point last_draw_{};
};

bool stderr_is_tty();

}  // namespace dg::bench
