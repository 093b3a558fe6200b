// A compiled training step's layers as a tape: one forward and one backward closure per
// layer, built once per input shape by the binding (cpp/bindings/step/), run in order with no
// allocation, no Python and no per-layer argument checks. Each closure calls the same driver
// with the same arguments as the layer's eager binding does, so a step through the tape is
// bitwise the eager step. Activations flow through slots: a slot holds the pointer a closure
// reads its input (forward) or dL/dy (backward) from; the tape's own two slots are set per
// call (the caller's input and the loss gradient).
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

namespace sg {

struct StepTape {
  using Step = std::function<void()>;
  std::vector<Step> forward_steps;   // in layer order
  std::vector<Step> backward_steps;  // in layer order; run in reverse
  std::deque<const float*> slots;    // stable addresses (a deque never moves its elements)

  const float** new_slot(const float* value = nullptr) {
    slots.push_back(value);
    return &slots.back();
  }

  void forward() const {
    for (const Step& s : forward_steps) s();
  }
  void backward() const {
    for (auto it = backward_steps.rbegin(); it != backward_steps.rend(); ++it) (*it)();
  }
};

}  // namespace sg
