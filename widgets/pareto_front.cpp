#include "pareto_front.h"

#include <algorithm>
#include <cmath>
#include <limits>

std::vector<std::size_t> paretoFront(const std::vector<ParetoPoint>& points) {
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < points.size(); ++i)
        if (!std::isnan(points[i].bits) && !std::isnan(points[i].cost)) order.push_back(i);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return points[a].bits != points[b].bits ? points[a].bits < points[b].bits
                                                : points[a].cost < points[b].cost;
    });
    // Sweeping by bits, a point is on the front when it beats the lowest cost seen so far, or
    // ties the last front point exactly.
    std::vector<std::size_t> front;
    double best = std::numeric_limits<double>::infinity();
    for (const std::size_t i : order) {
        const ParetoPoint& p = points[i];
        const bool equalToLast = !front.empty() && points[front.back()].bits == p.bits &&
                                 points[front.back()].cost == p.cost;
        if (p.cost < best || equalToLast) {
            front.push_back(i);
            best = p.cost;
        }
    }
    return front;
}
