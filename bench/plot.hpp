// SPDX-License-Identifier: MIT
// A hand-written SVG bar chart for the benchmarks' --plot: panels stacked vertically, one
// group of bars per case (e.g. a message size), one colour per series (e.g. a transport) and a
// log-scale value axis, since the figures compared span several decades.
#pragma once

#include <string>
#include <vector>

namespace shmkit::bench {

struct PlotBar {
  std::string series;  ///< the legend entry; one colour per series across all panels
  double value = 0;    ///< > 0 (the axis is logarithmic)
  std::string label;   ///< the value as text, shown when the mouse is over the bar
  std::string
      colour;  ///< e.g. "#e15759"; empty: the next of a palette (the series' first bar decides)
};

struct PlotGroup {
  std::string name;  ///< under the group, e.g. "64 B"
  std::vector<PlotBar> bars;
};

struct PlotPanel {
  std::string title;  ///< e.g. "round trip, median (lower is better)"
  std::vector<PlotGroup> groups;
  std::string (*tick)(double) = nullptr;  ///< labels a power of ten on the axis
};

/// Writes `panels` under `title` to `path` as a well-formed SVG document. Panels without a
/// bar are left out. Throws std::system_error when the file cannot be written.
void write_svg_chart(const std::string& path, const std::string& title,
                     const std::vector<PlotPanel>& panels);

}  // namespace shmkit::bench
